// ZeroDataParallel: construction, sharding of the state, gradient reduction into
// shards (stages 2/3), per-layer parameter gathering (stage 3) and the step.
// Optimizer-state gathering and the memory report are in zero_state.cpp.
#include "comm/zero.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/ops/ops.hpp"
#include "core/optim/kernels.hpp"

namespace cohort::comm {

using core::Context;
using core::DType;
using core::Shape;
using core::Tensor;
using core::nn::Parameter;

ShardLayout ShardLayout::make(int64_t total, int world) {
  COHORT_CHECK(world >= 1, fmt::format("ShardLayout: world size must be >= 1, got {}", world));
  COHORT_CHECK(total >= 0, fmt::format("ShardLayout: {} parameters", total));
  ShardLayout l;
  l.total = total;
  l.world = world;
  // At least one element per shard so that the collectives never see empty blocks.
  l.shard_size = std::max<int64_t>(1, (total + world - 1) / world);
  return l;
}

int64_t ShardLayout::begin(int rank) const {
  return std::min(total, static_cast<int64_t>(rank) * shard_size);
}

int64_t ShardLayout::end(int rank) const {
  return std::min(total, static_cast<int64_t>(rank + 1) * shard_size);
}

ZeroDataParallel::ZeroDataParallel(core::nn::Graph& graph, Communicator& comm,
                                   const ZeroOptions& options,
                                   const core::optim::OptimizerConfig& optimizer)
    : ZeroDataParallel(graph, &comm, comm.rank(), comm.size(), options, optimizer) {}

std::unique_ptr<ZeroDataParallel> ZeroDataParallel::plan(
    core::nn::Graph& graph, int rank, int world, const ZeroOptions& options,
    const core::optim::OptimizerConfig& optimizer) {
  return std::unique_ptr<ZeroDataParallel>(
      new ZeroDataParallel(graph, nullptr, rank, world, options, optimizer));
}

ZeroDataParallel::ZeroDataParallel(core::nn::Graph& graph, Communicator* comm, int rank, int world,
                                   const ZeroOptions& options,
                                   const core::optim::OptimizerConfig& optimizer)
    : m_graph(graph), m_comm(comm), m_rank(rank), m_options(options) {
  COHORT_CHECK(graph.built(), "ZeroDataParallel: build the graph first");
  COHORT_CHECK(options.stage >= 0 && options.stage <= 3,
               fmt::format("ZeroDataParallel: stage must be 0, 1, 2 or 3, got {}", options.stage));
  COHORT_CHECK(world >= 1 && rank >= 0 && rank < world,
               fmt::format("ZeroDataParallel: rank {} of world size {}", rank, world));
  COHORT_CHECK(comm == nullptr || comm->device() == graph.device(),
               fmt::format("ZeroDataParallel: the communicator works on {} but the graph lives "
                           "on {}",
                           comm ? comm->device().str() : "", graph.device().str()));
  COHORT_CHECK(
      options.bucket_bytes >= sizeof(float),
      fmt::format("ZeroDataParallel: bucket size {} B is too small", options.bucket_bytes));
  COHORT_CHECK(options.stage < 3 || graph.compute_dtype() == DType::f32,
               fmt::format("ZeroDataParallel: stage 3 needs f32 compute, the graph computes in {} "
                           "(its 16-bit weight copies are not sharded)",
                           core::dtype_name(graph.compute_dtype())));
  COHORT_CHECK(!options.bf16_gradients || options.stage <= 1,
               fmt::format("ZeroDataParallel: bf16 gradient communication is implemented for "
                           "stages 0 and 1, not {}",
                           options.stage));
  COHORT_CHECK(optimizer.shard_count < 0,
               "ZeroDataParallel: leave OptimizerConfig::shard_offset/shard_count unset; the "
               "engine sets them from the shard layout");
  m_layout = ShardLayout::make(graph.num_parameters(), world);

  Context ctx(graph.device());
  if (options.stage <= 1) {
    if (comm != nullptr) {
      DataParallelOptions dp;
      dp.bucket_bytes = options.bucket_bytes;
      dp.bf16_gradients = options.bf16_gradients;
      dp.sync_batch_norm = options.sync_batch_norm;
      m_dp = std::make_unique<DataParallel>(graph, *comm, dp);
      m_dp->broadcast_state(ctx);
    }
  } else if (comm != nullptr) {
    if (options.sync_batch_norm && comm->size() > 1) {
      m_stats_reducer = make_stats_reducer(*comm);
      set_batch_norm_reducer(graph, m_stats_reducer.get());
    }
    detail::broadcast_graph_state(*comm, graph, ctx);
  }
  shard_state(ctx, optimizer);
  if (options.stage >= 2) {
    detail::build_buckets(graph.parameters(), options.bucket_bytes, m_buckets, m_bucket_index);
    graph.set_layer_hooks([this](Context& c, core::nn::NodeId id, core::nn::Layer& layer,
                                 bool backward) { before_layer(c, id, layer, backward); },
                          [this](Context&, core::nn::NodeId id, core::nn::Layer& layer,
                                 bool backward) { after_layer(id, layer, backward); });
    graph.set_grad_ready_hook([this](std::span<Parameter* const> ps) { on_grads_ready(ps); });
  }
  ctx.synchronize();
}

ZeroDataParallel::~ZeroDataParallel() {
  if (m_options.stage >= 2) {
    m_graph.set_layer_hooks({}, {});
    m_graph.set_grad_ready_hook({});
  }
  if (m_stats_reducer) set_batch_norm_reducer(m_graph, nullptr);
}

Communicator& ZeroDataParallel::comm(const char* what) const {
  COHORT_CHECK(
      m_comm != nullptr,
      fmt::format("ZeroDataParallel::{}: this engine is a memory plan (no communicator)", what));
  return *m_comm;
}

bool ZeroDataParallel::has_compute_copy(const Parameter& p) const {
  return m_graph.compute_dtype() != DType::f32 && !p.keep_f32;
}

void ZeroDataParallel::shard_state(Context& ctx, const core::optim::OptimizerConfig& optimizer) {
  const int stage = m_options.stage;
  const int64_t lo = m_layout.begin(m_rank), count = m_layout.count(m_rank);
  core::optim::OptimizerConfig config = optimizer;
  if (stage >= 1) {
    config.shard_offset = lo;
    config.shard_count = count;
  }
  m_optimizer = std::make_unique<core::optim::Optimizer>(m_graph, config);

  const core::Device device = m_graph.device();
  const Shape padded{m_layout.padded()}, shard{m_layout.shard_size};
  if (stage == 1 || stage == 2) {
    // The graph's parameters move into the first N elements of a W * S buffer so
    // that the all-gather after the step writes them in place.
    m_padded_params = Tensor::zeros(padded, DType::f32, device, ctx.stream());
    m_graph.relocate_flat_params(ctx, m_padded_params.flat(0, m_layout.total));
  }
  if (stage >= 2) m_grad_shard = Tensor::zeros(shard, DType::f32, device, ctx.stream());
  if (stage == 3) {
    m_param_shard = Tensor::zeros(shard, DType::f32, device, ctx.stream());
    m_param_shard.flat(0, count).copy_from(m_graph.flat_params().flat(lo, count), ctx.stream());
    m_gathered.assign(static_cast<size_t>(m_graph.num_nodes()), Tensor());
    for (core::nn::NodeId id = 0; id < m_graph.num_nodes(); ++id) {
      const core::nn::Layer* layer = m_graph.layer(id);
      if (layer == nullptr || layer->params().empty()) continue;
      const auto [first, last] = layer_range(*layer);
      if (first < last) m_param_layers.push_back(id);
    }
  }
  // Releasing synchronises ctx first, so the copies above have read the buffers.
  if (stage >= 2) m_graph.relocate_flat_grads(ctx, Tensor());
  if (stage == 3) m_graph.relocate_flat_params(ctx, Tensor());
}

// ---- gradients (stages 2, 3) -----------------------------------------------------

void ZeroDataParallel::add_staging_bytes(int64_t bytes) {
  m_staging_bytes += bytes;
  m_peak_staging_bytes = std::max(m_peak_staging_bytes, m_staging_bytes);
}

void ZeroDataParallel::point_grads(size_t param, const Tensor& storage, int64_t storage_offset) {
  Parameter& p = m_graph.parameters()[param];
  p.grad = storage.defined()
               ? storage.flat(p.offset - storage_offset, p.shape.numel()).view(p.shape)
               : Tensor();
  // A 16-bit compute gradient stays in the graph's buffer; f32 ones alias `grad`.
  if (!has_compute_copy(p)) p.compute_grad = p.grad;
}

void ZeroDataParallel::ensure_staging(Context& ctx, Bucket& b) {
  if (b.staging.defined()) return;
  // Zeroed: a layer that accumulates, or that the losses did not reach, adds to it.
  b.staging = Tensor::zeros(Shape{b.count}, DType::f32, m_graph.device(), ctx.stream());
  add_staging_bytes(static_cast<int64_t>(b.staging.nbytes()));
  for (size_t k : b.params)
    point_grads(k, b.staging, b.offset);
}

void ZeroDataParallel::prepare_backward(Context& ctx, bool accumulate, bool last) {
  m_ctx = &ctx;
  if (m_options.stage <= 1) {
    comm("prepare_backward");
    m_dp->prepare_backward(ctx, last);
    return;
  }
  comm("prepare_backward");
  // Micro-batches: every backward is reduced into the shard, the previous one now.
  if (m_armed) finish_backward(ctx);
  const std::vector<Parameter>& params = m_graph.parameters();
  const bool changed = m_bucket_index.stale(params);
  COHORT_CHECK(!m_armed && m_launch_order.empty() && !m_full_grads.defined(),
               "ZeroDataParallel::prepare_backward: the previous backward was not finished "
               "(call finish_backward)");
  if (changed) {
    detail::build_buckets(params, m_options.bucket_bytes, m_buckets, m_bucket_index);
    // Parameters frozen since keep no stale gradient in the shard (norms).
    m_grad_shard.zero_(ctx.stream());
  }
  for (Bucket& b : m_buckets) {
    b.pending = static_cast<int>(b.params.size());
    b.launched = false;
  }
  m_accumulate = accumulate;
  m_armed = true;
  m_exposed_last = last;
  // Stage 3's backward prefetch predicts only layers backward will run (a frozen
  // backbone below the trainable layers is skipped, hooks included).
  if (m_options.stage == 3) m_runs_backward = m_graph.nodes_needing_grad();
  if (m_options.grad_reduction == GradReduction::reduce_scatter) {
    m_full_grads =
        Tensor::zeros(Shape{m_layout.padded()}, DType::f32, m_graph.device(), ctx.stream());
    add_staging_bytes(static_cast<int64_t>(m_full_grads.nbytes()));
    for (size_t k = 0; k < params.size(); ++k)
      if (params[k].trainable) point_grads(k, m_full_grads, 0);
  }
}

void ZeroDataParallel::before_layer(Context& ctx, core::nn::NodeId id, core::nn::Layer& layer,
                                    bool backward) {
  if (layer.params().empty()) return;
  if (m_options.stage == 3) gather_layer(ctx, id, layer, backward);
  if (!backward) return;
  COHORT_CHECK(m_armed, fmt::format("ZeroDataParallel: backward reached layer '{}' without "
                                    "prepare_backward (gradients have no storage)",
                                    m_graph.node_name(id)));
  m_ctx = &ctx;
  const std::vector<Parameter>& params = m_graph.parameters();
  for (Parameter* p : layer.params()) {
    const size_t k = static_cast<size_t>(p - params.data());
    if (!p->trainable) {
      // Some layers write a frozen parameter's gradient when its neighbour is
      // trainable; give it scratch storage, dropped after the layer.
      if (!p->grad.defined())
        point_grads(k, Tensor::zeros(p->shape, DType::f32, m_graph.device(), ctx.stream()),
                    p->offset);
      continue;
    }
    COHORT_CHECK(m_bucket_index.bucket_of[k] >= 0,
                 fmt::format("ZeroDataParallel: '{}' is trainable but in no bucket (was it "
                             "unfrozen after prepare_backward?)",
                             p->name));
    if (m_options.grad_reduction == GradReduction::bucketed)
      ensure_staging(ctx, m_buckets[static_cast<size_t>(m_bucket_index.bucket_of[k])]);
  }
}

void ZeroDataParallel::after_layer(core::nn::NodeId id, core::nn::Layer& layer, bool backward) {
  if (layer.params().empty()) return;
  if (m_options.stage == 3) release_layer(id, layer);
  if (!backward) return;
  const std::vector<Parameter>& params = m_graph.parameters();
  for (Parameter* p : layer.params())
    if (!p->trainable) point_grads(static_cast<size_t>(p - params.data()), Tensor(), 0);
}

void ZeroDataParallel::on_grads_ready(std::span<Parameter* const> ready) {
  if (!m_armed || m_options.grad_reduction != GradReduction::bucketed) return;
  const std::vector<Parameter>& params = m_graph.parameters();
  for (Parameter* p : ready) {
    const size_t b = m_bucket_index.bucket_of_ready(params, p, "ZeroDataParallel");
    if (--m_buckets[b].pending == 0) launch(b);
  }
  // Free what already arrived, so that staging memory stays near the buckets in flight.
  finish_completed(*m_ctx);
}

void ZeroDataParallel::launch(size_t index) {
  Bucket& b = m_buckets[index];
  COHORT_CHECK(b.staging.defined(),
               fmt::format("ZeroDataParallel: bucket at [{}, {}) is complete but has no staging "
                           "buffer (a layer ran backward without the layer hooks?)",
                           b.offset, b.offset + b.count));
  Communicator& c = comm("backward");
  // Only the owner of a part of the bucket keeps that part, so each part is
  // reduced to its owner alone: one reduce per shard the bucket meets, joined by
  // every rank (those owning none of the bucket only contribute). Together they
  // put about half an all-reduce's bytes on the wire (see zero.hpp).
  const int64_t lo = b.offset, hi = b.offset + b.count;
  if (lo < hi) {
    for (int r = m_layout.owner(lo); r <= m_layout.owner(hi - 1); ++r) {
      const int64_t first = std::max(lo, m_layout.begin(r)), last = std::min(hi, m_layout.end(r));
      if (first >= last) continue;
      b.works.push_back(c.reduce(b.staging.flat(first - lo, last - first), r, ReduceOp::average,
                                 m_ctx->stream()));
    }
  }
  b.launched = true;
  m_launch_order.push_back(index);
}

void ZeroDataParallel::keep_shard_part(Context& ctx, const Tensor& reduced, int64_t offset) {
  const int64_t lo = m_layout.begin(m_rank), hi = m_layout.end(m_rank);
  const int64_t a = std::max(lo, offset), b = std::min(hi, offset + reduced.numel());
  if (a >= b) return;
  Tensor dst = m_grad_shard.flat(a - lo, b - a);
  const Tensor src = reduced.flat(a - offset, b - a);
  if (m_accumulate)
    core::ops::add_inplace(ctx, dst, src);
  else
    dst.copy_from(src, ctx.stream());
}

void ZeroDataParallel::finish(Context& ctx, Bucket& b) {
  for (const WorkPtr& work : b.works)
    work->wait_stream(ctx.stream());
  b.works.clear();
  // The part inside this rank's shard is the one reduced to it; the rest of the
  // staging buffer is unspecified now.
  keep_shard_part(ctx, b.staging, b.offset);
  for (size_t k : b.params)
    point_grads(k, Tensor(), 0);
  add_staging_bytes(-static_cast<int64_t>(b.staging.nbytes()));
  b.staging = Tensor();
}

void ZeroDataParallel::finish_completed(Context& ctx) {
  std::vector<size_t> still;
  for (size_t index : m_launch_order) {
    Bucket& b = m_buckets[index];
    bool done = true;
    for (const WorkPtr& work : b.works)
      done = work->test() && done;  // polls every one: MPI progresses on each test
    if (done)
      finish(ctx, b);
    else
      still.push_back(index);
  }
  m_launch_order = std::move(still);
}

double ZeroDataParallel::exposed_comm_seconds() {
  if (m_options.stage <= 1) return m_dp->exposed_comm_seconds();
  if (m_exposed)
    if (const std::optional<double> s = m_exposed->seconds()) m_exposed_seconds = *s;
  return m_exposed_seconds;
}

void ZeroDataParallel::finish_backward(Context& ctx) {
  if (m_options.stage <= 1) {
    comm("finish_backward");
    m_dp->finish_backward(ctx);
    return;
  }
  // Measured as DataParallel does (data_parallel.hpp, exposed_comm_seconds), for
  // the step's last micro-batch only: one measurement per step, so a caller
  // reading once per step keeps up with the interval's queue. A call with
  // nothing armed waits for nothing and measures nothing.
  if (!m_armed || !m_exposed_last) {
    finish_reductions(ctx);
    return;
  }
  if (!m_exposed) m_exposed = std::make_unique<core::StreamInterval>(ctx.device());
  m_exposed->begin(ctx.stream());
  finish_reductions(ctx);
  m_exposed->end(ctx.stream());
}

void ZeroDataParallel::finish_reductions(Context& ctx) {
  if (!m_armed) return;
  m_armed = false;
  if (m_options.grad_reduction == GradReduction::reduce_scatter) {
    const int64_t s = m_layout.shard_size;
    const Tensor block = m_full_grads.flat(m_rank * s, s);
    comm("finish_backward")
        .reduce_scatter(m_full_grads, block, ReduceOp::average, ctx.stream())
        ->wait_stream(ctx.stream());
    keep_shard_part(ctx, block, m_rank * s);
    const std::vector<Parameter>& params = m_graph.parameters();
    for (size_t k = 0; k < params.size(); ++k)
      if (params[k].trainable) point_grads(k, Tensor(), 0);
    add_staging_bytes(-static_cast<int64_t>(m_full_grads.nbytes()));
    m_full_grads = Tensor();
    return;
  }
  for (const Bucket& b : m_buckets)
    if (!b.launched)
      detail::fail_unready_bucket("ZeroDataParallel", m_graph.parameters(), b.params, b.pending);
  for (size_t index : m_launch_order)
    finish(ctx, m_buckets[index]);
  m_launch_order.clear();
}

Tensor ZeroDataParallel::clip_grad_norm(Context& ctx, double max_norm) {
  if (m_options.stage <= 1) {
    comm("clip_grad_norm");
    return m_dp->clip_grad_norm(ctx, max_norm);
  }
  COHORT_CHECK(max_norm > 0, fmt::format("clip_grad_norm: max_norm must be > 0, got {}", max_norm));
  // Each rank holds a disjoint part of the averaged gradient: sum the squares.
  Tensor squares = core::optim::sum_of_squares(ctx, m_grad_shard);
  comm("clip_grad_norm")
      .all_reduce(squares, ReduceOp::sum, ctx.stream())
      ->wait_stream(ctx.stream());
  return core::optim::clip_to_max_norm(ctx, m_grad_shard, squares, max_norm);
}

// ---- step ----------------------------------------------------------------------------

void ZeroDataParallel::gather_padded(Context& ctx) {
  const int64_t s = m_layout.shard_size;
  comm("step")
      .all_gather(m_padded_params.flat(m_rank * s, s), m_padded_params, ctx.stream())
      ->wait_stream(ctx.stream());
}

void ZeroDataParallel::step(Context& ctx, double lr, const Tensor& skip_flag) {
  Communicator& c = comm("step");
  const int64_t lo = m_layout.begin(m_rank), count = m_layout.count(m_rank);
  // Stages 2/3 check overflow on their gradient shard only: the flag is summed over
  // ranks, in place, so that either every rank skips the step or none does, and a
  // LossScaler owning the flag then backs off on every rank alike. (Stages 0/1 see
  // the full, already averaged gradient, so their flags agree.)
  Tensor skip = skip_flag;
  if (skip.defined() && m_options.stage >= 2 && c.size() > 1)
    c.all_reduce(skip, ReduceOp::sum, ctx.stream())->wait_stream(ctx.stream());
  switch (m_options.stage) {
    case 0:
      m_optimizer->step(ctx, lr, skip);
      return;
    case 1:
      m_optimizer->step(ctx, lr, skip);  // the shard of the graph's flat buffers
      gather_padded(ctx);
      m_graph.refresh_compute_weights(ctx);
      return;
    case 2: {
      Tensor params = m_padded_params.flat(lo, count);
      m_optimizer->step_shard(ctx, lr, params, m_grad_shard.flat(0, count), skip);
      gather_padded(ctx);
      m_graph.refresh_compute_weights(ctx);
      return;
    }
    default: {
      // A layer whose forward threw never released its gathered copy, and
      // prefetches the last pass did not use: both would be stale now.
      for (core::nn::NodeId id = 0; id < m_graph.num_nodes(); ++id)
        if (m_gathered[static_cast<size_t>(id)].defined()) release_layer(id, *m_graph.layer(id));
      drop_prefetch();
      Tensor params = m_param_shard.flat(0, count);
      m_optimizer->step_shard(ctx, lr, params, m_grad_shard.flat(0, count), skip);
      return;  // the next forward gathers each layer's parameters
    }
  }
}

// ---- parameters (stage 3) --------------------------------------------------------------

std::pair<int64_t, int64_t> ZeroDataParallel::layer_range(const core::nn::Layer& layer) const {
  int64_t lo = m_layout.total, hi = 0;
  for (const Parameter* p : layer.params()) {
    lo = std::min(lo, p->offset);
    hi = std::max(hi, p->offset + p->shape.numel());
  }
  return {lo, hi};
}

ZeroDataParallel::LayerGather ZeroDataParallel::start_gather(Context& ctx, core::nn::NodeId id,
                                                             const core::nn::Layer& layer) {
  LayerGather g;
  const auto [lo, hi] = layer_range(layer);
  if (lo >= hi) return g;
  Communicator& c = comm("forward/backward");
  g.node = id;
  g.buffer = Tensor::empty(Shape{hi - lo}, DType::f32, m_graph.device(), ctx.stream());
  // A layer's parameters are contiguous; each owner of part of them broadcasts it.
  const int64_t mine = m_layout.begin(m_rank);
  for (int r = m_layout.owner(lo); r <= m_layout.owner(hi - 1); ++r) {
    const int64_t a = std::max(lo, m_layout.begin(r)), b = std::min(hi, m_layout.end(r));
    if (a >= b) continue;
    Tensor piece = g.buffer.flat(a - lo, b - a);
    if (r == m_rank) piece.copy_from(m_param_shard.flat(a - mine, b - a), ctx.stream());
    g.works.push_back(c.broadcast(piece, r, ctx.stream()));
  }
  m_gathered_bytes += static_cast<int64_t>(g.buffer.nbytes());
  m_peak_gathered_bytes = std::max(m_peak_gathered_bytes, m_gathered_bytes);
  return g;
}

void ZeroDataParallel::install_gather(Context& ctx, LayerGather& g, core::nn::Layer& layer) {
  if (g.node < 0) return;
  for (const WorkPtr& w : g.works)
    w->wait_stream(ctx.stream());
  const int64_t lo = layer_range(layer).first;
  for (Parameter* p : layer.params()) {
    p->value = g.buffer.flat(p->offset - lo, p->shape.numel()).view(p->shape);
    p->compute = p->value;
  }
  m_gathered[static_cast<size_t>(g.node)] = std::move(g.buffer);
  g = LayerGather();
}

void ZeroDataParallel::drop_prefetch() {
  // Dropping the works waits for the broadcasts (device backends: orders the
  // issuing stream after them), so the buffers are released safely after them.
  for (LayerGather& g : m_prefetch) {
    g.works.clear();
    m_gathered_bytes -= static_cast<int64_t>(g.buffer.nbytes());
  }
  m_prefetch.clear();
}

core::nn::NodeId ZeroDataParallel::next_param_layer(core::nn::NodeId id, bool backward) const {
  const auto it = std::lower_bound(m_param_layers.begin(), m_param_layers.end(), id);
  if (it == m_param_layers.end() || *it != id) return -1;
  if (backward) {
    for (auto prev = it; prev != m_param_layers.begin();) {
      --prev;
      const auto k = static_cast<size_t>(*prev);
      if (k >= m_runs_backward.size() || m_runs_backward[k]) return *prev;
    }
    return -1;
  }
  return std::next(it) == m_param_layers.end() ? -1 : *std::next(it);
}

void ZeroDataParallel::gather_layer(Context& ctx, core::nn::NodeId id, core::nn::Layer& layer,
                                    bool backward) {
  if (!m_prefetch.empty() && m_prefetch.front().node == id) {
    install_gather(ctx, m_prefetch.front(), layer);
    m_prefetch.pop_front();
  } else if (!m_gathered[static_cast<size_t>(id)].defined()) {
    // Not the layer predicted (forward of a subgraph, a layer backward skips):
    // the prefetches are wasted. Every rank runs the same layers, so every rank
    // drops them and issues the same gathers.
    drop_prefetch();
    LayerGather g = start_gather(ctx, id, layer);
    install_gather(ctx, g, layer);
  }
  if (!m_options.prefetch) return;
  // The next layers' gathers run while this layer computes; each is waited for in
  // that layer's before-hook. In flight: the layers after this one in the pass's
  // order until their bytes reach prefetch_bytes (at least one layer).
  int64_t in_flight = 0;
  for (const LayerGather& g : m_prefetch)
    in_flight += static_cast<int64_t>(g.buffer.nbytes());
  core::nn::NodeId last = m_prefetch.empty() ? id : m_prefetch.back().node;
  while (m_prefetch.empty() || in_flight < static_cast<int64_t>(m_options.prefetch_bytes)) {
    const core::nn::NodeId next = next_param_layer(last, backward);
    if (next < 0 || m_gathered[static_cast<size_t>(next)].defined()) return;
    m_prefetch.push_back(start_gather(ctx, next, *m_graph.layer(next)));
    in_flight += static_cast<int64_t>(m_prefetch.back().buffer.nbytes());
    last = next;
  }
}

void ZeroDataParallel::release_layer(core::nn::NodeId id, core::nn::Layer& layer) {
  Tensor& gathered = m_gathered[static_cast<size_t>(id)];
  if (!gathered.defined()) return;
  for (Parameter* p : layer.params()) {
    p->value = Tensor();
    p->compute = Tensor();
  }
  m_gathered_bytes -= static_cast<int64_t>(gathered.nbytes());
  gathered = Tensor();
}

Tensor ZeroDataParallel::gather_parameters(Context& ctx) {
  if (m_options.stage < 3) return m_graph.flat_params().clone(ctx.stream());
  const int64_t s = m_layout.shard_size;
  Tensor whole =
      Tensor::empty(Shape{m_layout.padded()}, DType::f32, m_graph.device(), ctx.stream());
  Tensor block = whole.flat(m_rank * s, s);
  block.copy_from(m_param_shard, ctx.stream());
  comm("gather_parameters").all_gather(block, whole, ctx.stream())->wait_stream(ctx.stream());
  return whole.flat(0, m_layout.total);
}

}  // namespace cohort::comm
