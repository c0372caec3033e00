// ZeroDataParallel: optimizer state across shards (gather to rank 0, load from a
// whole state), loading whole parameters into the shard, and per-rank memory,
// measured on the storages actually held.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "comm/zero.hpp"

namespace cohort::comm {

using core::Context;
using core::DType;
using core::Shape;
using core::Tensor;
using core::nn::Parameter;

namespace {

// Sums the bytes of storages not seen before (views of one buffer count once).
class StorageCounter {
 public:
  void add(const Tensor& t, int64_t& total) {
    if (t.defined() && m_seen.insert(t.storage().get()).second)
      total += static_cast<int64_t>(t.storage()->bytes());
  }

 private:
  std::set<const core::Storage*> m_seen;
};

}  // namespace

ZeroMemory ZeroDataParallel::memory() const {
  ZeroMemory m;
  m.stage = m_options.stage;
  m.rank = m_rank;
  m.world = m_layout.world;
  m.num_parameters = m_layout.total;
  StorageCounter seen;
  seen.add(m_graph.flat_params(), m.parameters);
  seen.add(m_padded_params, m.parameters);
  seen.add(m_param_shard, m.parameters);
  for (const Tensor& t : m_gathered)
    seen.add(t, m.parameters);
  for (const LayerGather& g : m_prefetch)
    seen.add(g.buffer, m.parameters);
  for (const Parameter& p : m_graph.parameters()) {
    seen.add(p.value, m.parameters);
    seen.add(p.compute, m.parameters);
  }
  seen.add(m_graph.flat_grads(), m.gradients);
  seen.add(m_grad_shard, m.gradients);
  seen.add(m_full_grads, m.gradients);
  for (const Bucket& b : m_buckets)
    seen.add(b.staging, m.gradients);
  for (const Parameter& p : m_graph.parameters()) {
    seen.add(p.grad, m.gradients);
    seen.add(p.compute_grad, m.gradients);
  }
  for (const auto& [name, buffer] : m_optimizer->state_buffers())
    seen.add(buffer, m.optimizer);
  m.peak_gathered_parameters = m_peak_gathered_bytes;
  m.peak_gradient_staging = m_peak_staging_bytes;
  const int64_t f = sizeof(float);
  if (m_options.grad_reduction == GradReduction::bucketed)
    for (const Bucket& b : m_buckets)
      m.largest_bucket = std::max(m.largest_bucket, b.count * f);
  if (m_options.stage == 3) {
    // The running layer and, with prefetch, its window: the layers after it in
    // either pass's order (neighbours in m_param_layers) until their bytes reach
    // prefetch_bytes, at least one. A misprediction drops the window before
    // gathering, so nothing else is ever held.
    std::vector<int64_t> bytes;
    for (core::nn::NodeId id : m_param_layers) {
      const auto [lo, hi] = layer_range(*m_graph.layer(id));
      bytes.push_back((hi - lo) * f);
      m.largest_layer = std::max(m.largest_layer, bytes.back());
    }
    const int64_t n = static_cast<int64_t>(bytes.size());
    const int64_t budget = static_cast<int64_t>(m_options.prefetch_bytes);
    for (int64_t i = 0; i < n; ++i) {
      for (const int64_t direction : {1, -1}) {
        int64_t held = bytes[static_cast<size_t>(i)], window = 0, taken = 0;
        for (int64_t j = i + direction; m_options.prefetch && j >= 0 && j < n; j += direction) {
          if (taken > 0 && window >= budget) break;
          window += bytes[static_cast<size_t>(j)];
          ++taken;
        }
        m.largest_gathered = std::max(m.largest_gathered, held + window);
      }
    }
  }
  return m;
}

std::map<std::string, Tensor> ZeroDataParallel::gather_optimizer_state(Context& ctx) {
  Communicator& c = comm("gather_optimizer_state");
  std::map<std::string, Tensor> out;
  if (m_options.stage == 0) {
    if (m_rank == 0)
      for (const auto& [name, t] : m_optimizer->state())
        out.emplace(name, t.clone(ctx.stream()));
    return out;
  }
  // One buffer at a time: every rank briefly holds one whole (padded) buffer.
  const int64_t s = m_layout.shard_size, count = m_layout.count(m_rank);
  for (const auto& [name, buffer] : m_optimizer->state_buffers()) {
    Tensor whole =
        Tensor::zeros(Shape{m_layout.padded()}, DType::f32, m_graph.device(), ctx.stream());
    Tensor block = whole.flat(m_rank * s, s);
    block.flat(0, count).copy_from(buffer, ctx.stream());
    c.all_gather(block, whole, ctx.stream())->wait_stream(ctx.stream());
    if (m_rank != 0) continue;
    for (const Parameter& p : m_graph.parameters())
      out.emplace(fmt::format("{}/{}", name, p.name),
                  whole.flat(p.offset, p.shape.numel()).view(p.shape));
  }
  return out;
}

void ZeroDataParallel::load_optimizer_state(Context& ctx,
                                            const std::map<std::string, Tensor>& full) {
  const core::optim::Optimizer& opt = *m_optimizer;
  for (const auto& [name, buffer] : opt.state_buffers()) {
    for (const Parameter& p : m_graph.parameters()) {
      const auto [first, last] = opt.owned_range(p);
      if (first == last) continue;
      const std::string key = fmt::format("{}/{}", name, p.name);
      auto it = full.find(key);
      COHORT_CHECK(it != full.end(),
                   fmt::format("ZeroDataParallel::load_optimizer_state: no entry '{}'", key));
      COHORT_CHECK(it->second.dtype() == DType::f32 && it->second.numel() == p.shape.numel(),
                   fmt::format("ZeroDataParallel::load_optimizer_state: '{}' is {}, expected "
                               "f32{}",
                               key, it->second.str(), p.shape.str()));
      const Tensor source = it->second.view(Shape{p.shape.numel()}).flat(first, last - first);
      Tensor target = buffer.flat(p.offset + first - opt.shard_offset(), last - first);
      target.copy_from(source, ctx.stream());
    }
  }
}

void ZeroDataParallel::load_parameters(Context& ctx, const Tensor& full) {
  const int64_t n = m_layout.total;
  COHORT_CHECK(full.defined() && full.dtype() == DType::f32 && full.numel() == n,
               fmt::format("ZeroDataParallel::load_parameters: expected f32 with {} elements, got "
                           "{}",
                           n, full.defined() ? full.str() : std::string("an undefined tensor")));
  const Tensor flat = full.flat(0, n);
  if (m_options.stage < 3) {
    m_graph.flat_params().copy_from(flat, ctx.stream());
    m_graph.refresh_compute_weights(ctx);
    return;
  }
  // Layer copies gathered before (a forward that threw, an unused prefetch)
  // would hold the old values.
  for (core::nn::NodeId id = 0; id < m_graph.num_nodes(); ++id)
    if (m_gathered[static_cast<size_t>(id)].defined()) release_layer(id, *m_graph.layer(id));
  drop_prefetch();
  const int64_t lo = m_layout.begin(m_rank), count = m_layout.count(m_rank);
  m_param_shard.flat(0, count).copy_from(flat.flat(lo, count), ctx.stream());
}

// ---- memory report ----------------------------------------------------------------------

std::vector<ZeroMemory> zero_memory_table(const std::function<void(core::nn::Graph&)>& build_model,
                                          int world, int rank,
                                          const core::optim::OptimizerConfig& optimizer,
                                          const std::vector<int>& stages) {
  std::vector<ZeroMemory> rows;
  for (int stage : stages) {
    // A fresh graph per stage: the engine relocates and releases its buffers.
    core::nn::Graph graph;
    build_model(graph);
    graph.build(core::Device::cpu(), /*seed=*/0);
    ZeroOptions options;
    options.stage = stage;
    rows.push_back(ZeroDataParallel::plan(graph, rank, world, options, optimizer)->memory());
  }
  return rows;
}

void print_zero_memory_table(const std::vector<ZeroMemory>& rows, const std::string& model,
                             const std::string& optimizer, std::FILE* out) {
  if (rows.empty()) return;
  const double mib = 1024.0 * 1024.0;
  fmt::print(out,
             "ZeRO memory per rank: {}, {} parameters, {}, world size {} (rank {}); MiB held "
             "between steps\n",
             model, rows.front().num_parameters, optimizer, rows.front().world, rows.front().rank);
  fmt::print(out, "{:>5} {:>12} {:>12} {:>12} {:>12} {:>10}\n", "stage", "parameters", "gradients",
             "optimizer", "total", "vs stage 0");
  const ZeroMemory* base = nullptr;
  for (const ZeroMemory& r : rows)
    if (r.stage == 0) base = &r;
  for (const ZeroMemory& r : rows) {
    const std::string ratio =
        base ? fmt::format("{:.3f}", static_cast<double>(r.persistent()) / base->persistent())
             : std::string("-");
    fmt::print(out, "{:>5} {:>12.2f} {:>12.2f} {:>12.2f} {:>12.2f} {:>10}\n", r.stage,
               r.parameters / mib, r.gradients / mib, r.optimizer / mib, r.persistent() / mib,
               ratio);
  }
  int64_t bucket = 0, gathered = 0;
  for (const ZeroMemory& r : rows) {
    bucket = std::max(bucket, r.largest_bucket);
    gathered = std::max(gathered, r.largest_gathered);
  }
  fmt::print(out,
             "Transient during a step (not above): stages 2/3 stage gradients in buckets of at "
             "most {:.2f} MiB, freed once reduced; stage 3 holds the running layer's parameters "
             "gathered and prefetches the next one's, at most {:.2f} MiB together.\n",
             bucket / mib, gathered / mib);
}

std::vector<ZeroMemory> run_zero_memory_report(
    const ZeroReportOptions& options, const std::function<void(core::nn::Graph&)>& build_model,
    const std::string& model, std::FILE* out) {
  core::optim::OptimizerConfig optimizer;
  optimizer.kind = options.optimizer;
  COHORT_CHECK(optimizer.kind == "sgd" || optimizer.kind == "adamw",
               fmt::format("zero memory report: optimizer must be sgd or adamw, got '{}'",
                           options.optimizer));
  const std::vector<ZeroMemory> rows =
      zero_memory_table(build_model, options.world_size, options.rank, optimizer);
  print_zero_memory_table(rows, model, optimizer.kind == "sgd" ? "SGD with momentum" : "AdamW",
                          out);
  return rows;
}

}  // namespace cohort::comm
