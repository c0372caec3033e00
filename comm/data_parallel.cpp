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
  build_buckets();
  graph.set_grad_ready_hook([this](std::span<core::nn::Parameter* const> ps) { on_ready(ps); });
}

DataParallel::~DataParallel() {
  m_graph.set_grad_ready_hook({});
  if (m_stats_reducer) set_batch_norm_reducer(m_graph, nullptr);
}

void DataParallel::build_buckets() {
  const std::vector<core::nn::Parameter>& params = m_graph.parameters();
  m_buckets.clear();
  m_bucket_of.assign(params.size(), -1);
  m_trainable_at_build.assign(params.size(), false);
  const int64_t cap = static_cast<int64_t>(m_options.bucket_bytes / sizeof(float));
  bool open = false;
  // Reverse order: the last parameters' gradients are final first.
  for (size_t k = params.size(); k-- > 0;) {
    const core::nn::Parameter& p = params[k];
    m_trainable_at_build[k] = p.trainable;
    if (!p.trainable) {
      open = false;  // a frozen parameter splits buckets: it is never sent
      continue;
    }
    const int64_t n = p.shape.numel();
    if (!open || m_buckets.back().count + n > cap) {
      m_buckets.push_back(Bucket{p.offset, 0, {}, 0, nullptr, {}});
      open = true;
    }
    Bucket& b = m_buckets.back();
    // Contiguous by construction: params are laid out in insertion order.
    b.offset = p.offset;
    b.count += n;
    b.params.push_back(k);
    m_bucket_of[k] = static_cast<int>(m_buckets.size() - 1);
  }
}

void DataParallel::broadcast_state(core::Context& ctx) {
  std::vector<WorkPtr> works;
  works.push_back(m_comm.broadcast(m_graph.flat_params(), 0, ctx.stream()));
  for (core::nn::Buffer& b : m_graph.buffers())
    works.push_back(m_comm.broadcast(b.value, 0, ctx.stream()));
  for (WorkPtr& w : works)
    w->wait_stream(ctx.stream());
  m_graph.refresh_compute_weights(ctx);
}

void DataParallel::prepare_backward(core::Context& ctx, bool communicate) {
  bool changed = false;
  const std::vector<core::nn::Parameter>& params = m_graph.parameters();
  for (size_t k = 0; k < params.size(); ++k)
    changed = changed || params[k].trainable != m_trainable_at_build[k];
  if (changed) build_buckets();
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
    const size_t k = static_cast<size_t>(p - params.data());
    COHORT_CHECK(k < params.size() && m_bucket_of[k] >= 0,
                 fmt::format("DataParallel: gradient of '{}' reported ready but it is in no "
                             "bucket (was it unfrozen after prepare_backward?)",
                             p->name));
    Bucket& b = m_buckets[static_cast<size_t>(m_bucket_of[k])];
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

void DataParallel::finish_backward(core::Context& ctx) {
  const auto start = std::chrono::steady_clock::now();
  const bool armed = m_armed;
  m_armed = false;
  for (Bucket& b : m_buckets) {
    if (!armed) continue;
    if (!b.work) {
      std::string names;
      for (size_t k : b.params)
        names += " " + m_graph.parameters()[k].name;
      COHORT_FAIL(
          fmt::format("DataParallel::finish_backward: a bucket never became ready; "
                      "{} of its parameters were not reported:{}",
                      b.pending, names));
    }
    b.work->wait_stream(ctx.stream());
    if (b.staging.defined()) {
      core::Tensor grads = m_graph.flat_grads().flat(b.offset, b.count);
      core::optim::cast_into(ctx, grads, b.staging);
      b.staging = core::Tensor();
    }
    b.work.reset();
  }
  m_exposed_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double DataParallel::clip_grad_norm(core::Context& ctx, double max_norm) {
  COHORT_CHECK(max_norm > 0, fmt::format("clip_grad_norm: max_norm must be > 0, got {}", max_norm));
  // Gradients are identical on every rank after the all-reduce: no communication.
  const double norm =
      std::sqrt(core::optim::sum_of_squares(ctx, m_graph.flat_grads()).item(ctx.stream()));
  if (norm > max_norm) {
    core::Tensor factor =
        core::Tensor::empty(core::Shape{1}, core::DType::f32, ctx.device(), ctx.stream());
    core::ops::fill(ctx, factor, max_norm / (norm + 1e-6));
    core::optim::scale_by(ctx, m_graph.flat_grads(), factor);
  }
  return norm;
}

}  // namespace cohort::comm
