#include "comm/data_parallel.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "core/nn/layers.hpp"
#include "core/optim/kernels.hpp"

namespace cohort::comm {

namespace {

class CommStatsReducer : public core::ops::StatsReducer {
 public:
  explicit CommStatsReducer(Communicator& comm) : m_comm(comm) {}
  void all_reduce_sum(core::Context& ctx, core::Tensor& values) override {
    m_comm.all_reduce(values, ReduceOp::sum, ctx.stream())->wait_stream(ctx.stream());
  }

 private:
  Communicator& m_comm;
};

}  // namespace

std::unique_ptr<core::ops::StatsReducer> make_stats_reducer(Communicator& comm) {
  return std::make_unique<CommStatsReducer>(comm);
}

int set_batch_norm_reducer(core::nn::Graph& graph, core::ops::StatsReducer* reducer) {
  int count = 0;
  for (core::nn::NodeId id = 0; id < graph.num_nodes(); ++id) {
    if (auto* bn = dynamic_cast<core::nn::BatchNorm2d*>(graph.layer(id))) {
      bn->set_reducer(reducer);
      ++count;
    }
  }
  return count;
}

DataParallel::DataParallel(core::nn::Graph& graph, Communicator& comm,
                           const DataParallelOptions& options)
    : m_graph(graph), m_comm(comm), m_options(options) {
  COHORT_CHECK(graph.built(), "DataParallel: build the graph first");
  COHORT_CHECK(comm.device() == graph.device(),
               fmt::format("DataParallel: the communicator works on {} but the graph lives on {}",
                           comm.device().str(), graph.device().str()));
  COHORT_CHECK(options.bucket_bytes >= 4,
               fmt::format("DataParallel: bucket size {} B is too small", options.bucket_bytes));
  if (options.sync_batch_norm && comm.size() > 1) {
    m_stats_reducer = make_stats_reducer(comm);
    set_batch_norm_reducer(graph, m_stats_reducer.get());
  }
  detail::build_buckets(graph.parameters(), options.bucket_bytes, m_buckets, m_bucket_index);
  graph.set_grad_ready_hook([this](std::span<core::nn::Parameter* const> ps) { on_ready(ps); });
}

DataParallel::~DataParallel() {
  m_graph.set_grad_ready_hook({});
  if (m_stats_reducer) set_batch_norm_reducer(m_graph, nullptr);
}

void DataParallel::broadcast_state(core::Context& ctx) {
  detail::broadcast_graph_state(m_comm, m_graph, ctx);
}

void DataParallel::prepare_backward(core::Context& ctx, bool communicate) {
  if (m_bucket_index.stale(m_graph.parameters()))
    detail::build_buckets(m_graph.parameters(), m_options.bucket_bytes, m_buckets, m_bucket_index);
  for (Bucket& b : m_buckets) {
    COHORT_CHECK(b.work == nullptr,
                 "DataParallel::prepare_backward: the previous backward was not finished "
                 "(call finish_backward)");
    b.pending = static_cast<int>(b.params.size());
  }
  m_ctx = &ctx;
  m_armed = communicate;
}

void DataParallel::on_ready(std::span<core::nn::Parameter* const> ready) {
  if (!m_armed) return;
  const std::vector<core::nn::Parameter>& params = m_graph.parameters();
  for (core::nn::Parameter* p : ready) {
    Bucket& b = m_buckets[m_bucket_index.bucket_of_ready(params, p, "DataParallel")];
    if (--b.pending == 0) launch(b);
  }
}

void DataParallel::launch(Bucket& b) {
  core::Tensor grads = m_graph.flat_grads().flat(b.offset, b.count);
  if (m_options.bf16_gradients) {
    b.staging = core::ops::cast(*m_ctx, grads, core::DType::bf16);
    b.work = m_comm.all_reduce(b.staging, ReduceOp::average, m_ctx->stream());
  } else {
    b.work = m_comm.all_reduce(grads, ReduceOp::average, m_ctx->stream());
  }
  m_communicated += b.count;
}

double DataParallel::exposed_comm_seconds() {
  // One measurement per call, oldest first: a caller reading once per step gets
  // every step's value even while the device runs a few steps behind.
  if (m_exposed)
    if (const std::optional<double> s = m_exposed->seconds()) m_exposed_seconds = *s;
  return m_exposed_seconds;
}

void DataParallel::finish_backward(core::Context& ctx) {
  // A backward that communicated nothing (gradient accumulation's micro-batches
  // before the last) has nothing to wait for and must not overwrite the step's
  // measurement with an empty interval.
  if (!m_armed) return;
  // Not read here: the interval keeps earlier steps' measurements until
  // exposed_comm_seconds reads them (reading here too would consume one that the
  // caller never sees).
  if (!m_exposed) m_exposed = std::make_unique<core::StreamInterval>(ctx.device());
  m_exposed->begin(ctx.stream());
  m_armed = false;
  // Every launched bucket is finished before an unready one is reported, so no
  // collective is left in flight behind the error.
  const Bucket* unready = nullptr;
  for (Bucket& b : m_buckets) {
    if (!b.work) {
      if (unready == nullptr) unready = &b;
      continue;
    }
    b.work->wait_stream(ctx.stream());
    if (b.staging.defined()) {
      core::Tensor grads = m_graph.flat_grads().flat(b.offset, b.count);
      core::optim::cast_into(ctx, grads, b.staging);
      b.staging = core::Tensor();
    }
    b.work.reset();
  }
  m_exposed->end(ctx.stream());
  if (unready != nullptr)
    detail::fail_unready_bucket("DataParallel", m_graph.parameters(), unready->params,
                                unready->pending);
}

core::Tensor DataParallel::clip_grad_norm(core::Context& ctx, double max_norm) {
  COHORT_CHECK(max_norm > 0, fmt::format("clip_grad_norm: max_norm must be > 0, got {}", max_norm));
  // Gradients are identical on every rank after the all-reduce: no communication.
  core::Tensor& grads = m_graph.flat_grads();
  return core::optim::clip_to_max_norm(ctx, grads, core::optim::sum_of_squares(ctx, grads),
                                       max_norm);
}

}  // namespace cohort::comm
