#include "comm/data_parallel_common.hpp"

#include <fmt/format.h>

#include <string>

#include "core/error.hpp"
#include "core/ops/ops.hpp"
#include "core/optim/kernels.hpp"

namespace cohort::comm::detail {

bool BucketIndex::stale(const std::vector<core::nn::Parameter>& params) const {
  for (size_t k = 0; k < params.size(); ++k)
    if (params[k].trainable != trainable_at_build[k]) return true;
  return false;
}

size_t BucketIndex::bucket_of_ready(const std::vector<core::nn::Parameter>& params,
                                    const core::nn::Parameter* p, const char* engine) const {
  const size_t k = static_cast<size_t>(p - params.data());
  COHORT_CHECK(k < params.size() && bucket_of[k] >= 0,
               fmt::format("{}: gradient of '{}' reported ready but it is in no bucket (was it "
                           "unfrozen after prepare_backward?)",
                           engine, p->name));
  return static_cast<size_t>(bucket_of[k]);
}

void fail_unready_bucket(const char* engine, const std::vector<core::nn::Parameter>& params,
                         const std::vector<size_t>& bucket_params, int pending) {
  std::string names;
  for (size_t k : bucket_params)
    names += " " + params[k].name;
  COHORT_FAIL(
      fmt::format("{}::finish_backward: a bucket never became ready; {} of its parameters "
                  "were not reported:{}",
                  engine, pending, names));
}

void broadcast_graph_state(Communicator& comm, core::nn::Graph& graph, core::Context& ctx) {
  std::vector<WorkPtr> works;
  works.push_back(comm.broadcast(graph.flat_params(), 0, ctx.stream()));
  for (core::nn::Buffer& b : graph.buffers())
    works.push_back(comm.broadcast(b.value, 0, ctx.stream()));
  for (WorkPtr& w : works)
    w->wait_stream(ctx.stream());
  graph.refresh_compute_weights(ctx);
}

}  // namespace cohort::comm::detail
