#pragma once
// Sharded data parallelism (ZeRO stages 1-3) over a model graph, with plain data
// parallelism as stage 0 so one engine covers all four.
//
// Shard layout: the flat parameter range [0, N) is cut into W contiguous shards
// of S = ceil(N / W) elements (N padded to W * S for the collectives); rank r
// owns [r * S, min(N, (r + 1) * S)), maybe empty when W > N.
//
// What a rank holds between steps (f32 compute; ZeroDataParallel::memory()
// measures it from the storages actually allocated):
//   stage  parameters        gradients          optimizer state
//   0      N                 N                  k * N
//   1      W * S (padded)    N                  k * S
//   2      W * S (padded)    S                  k * S
//   3      S                 S                  k * S
// (k = 1 for SGD with momentum, 2 for AdamW). Transient, during a step:
//   stage 2, 3 gradients: `bucketed` reduction: the staging buffers of the
//     buckets in flight (a bucket is allocated when backward reaches its first
//     layer and freed once reduced); `reduce_scatter`: one W * S buffer.
//   stage 3 parameters: the gathered parameters of the layer running plus, with
//     `prefetch` (default), those of the next layers in execution order, being
//     gathered meanwhile: the next one, or as many as `prefetch_bytes` takes
//     (ZeroMemory::largest_gathered); one layer without prefetch.
//
// Per stage:
//   0  DataParallel (bucketed all-reduce overlapping backward) + Optimizer.
//   1  the same gradient path; the optimizer updates only this rank's shard
//      (state of shard size), then the parameters are all-gathered in place in
//      the padded buffer.
//   2  the graph's full gradient buffer is released. `bucketed` (default): before
//      a layer's backward its gradient views point into its bucket's staging
//      buffer; when a bucket is complete, each part of it inside rank r's shard
//      is reduced (average) to rank r alone while backward goes on: one
//      Communicator::reduce per shard the bucket meets, joined by every rank
//      (ranks owning none of the bucket only contribute). The owner then keeps
//      its part in its shard-sized gradient. The payload equals plain data
//      parallelism's, but a reduce needs each non-root rank to send its part
//      once (tree or chain), so a bucket of P bytes puts about (W-1) * P bytes on
//      the wire in all, half of a ring all-reduce's 2 (W-1) * P; the overlap with
//      backward is kept.
//      `reduce_scatter`: gradients go to one transient padded buffer and one
//      reduce-scatter after backward leaves each rank its block: the same half
//      of the bytes in one collective, but no overlap. Optimizer on the shard,
//      then all-gather.
//   3  the parameters live in a shard-sized buffer; the graph's full parameter
//      buffer is released. Before each layer's forward and backward (layer
//      hooks) its parameters are gathered into a temporary buffer (one broadcast
//      from each owner of part of the layer's range) that the layer's views point
//      into, released right after the layer. With `prefetch`, the hook of layer
//      i also starts the gathers of the next layers with parameters in the pass's
//      order (forward: the next node ids; backward: the previous; one layer, or
//      up to `prefetch_bytes` of them), and their hooks only wait, so gathers
//      overlap compute. The prediction
//      depends on the graph alone, so every rank makes the same one; when the
//      next layer that runs is another (a forward of a subgraph, a layer
//      backward skips) the prefetch is dropped (after it completed) and that
//      layer gathered on the spot; one still pending at step() is dropped there
//      (the parameters change). Gradients as in stage 2. The optimizer updates
//      the shard in place; nothing is gathered after the step.
//
//   ZeroDataParallel zero(graph, comm, {.stage = 3}, optimizer_config);
//   for each step:
//     for k in 0..K-1:                          // micro-batches
//       graph.forward(...);
//       zero.prepare_backward(ctx, /*accumulate=*/k > 0, /*last=*/k == K - 1);
//       graph.backward(ctx, {{loss, seed_of_1_over_K}}, /*accumulate=*/k > 0);
//     zero.finish_backward(ctx);
//     zero.step(ctx, lr);
//
// Gradient accumulation: stages 0/1 communicate once, on the last micro-batch;
// stages 2/3 reduce every micro-batch into the shard's gradient (adding after the
// first; prepare_backward finishes the previous micro-batch's reduction), so no
// full gradient buffer survives a backward.
//
// What overlaps: the gradient buckets' all-reduces (stages 0/1) or reduces
// (stages 2/3, `bucketed`) with the rest of backward; stage 3's gather of the
// next layer with the current layer (`prefetch`). The all-gather after the step
// (stages 1/2) is waited for before the next op; the reduce-scatter mode runs
// after backward.
//
// Checkpoints: Optimizer::state() of a sharded optimizer holds only the rank's
// part (with Optimizer::owned_range for cut parameters), enough for per-rank
// files. gather_optimizer_state() gives rank 0 the whole state by name, exactly
// what an unsharded optimizer's state() holds, so a checkpoint written from it is
// independent of the world size; load_optimizer_state() takes such a state on
// every rank and keeps the shard's part. Under stage 3, Graph::state() has no
// parameter values between layers: gather_parameters() gives the whole vector,
// and load_parameters() takes one back. comm/zero_checkpoint.hpp builds whole
// training checkpoints (io::TrainingSnapshot files) from these, loadable at any
// stage and world size and by io::load_training_checkpoint.
//
// Limits: stage 3 needs f32 compute (16-bit compute copies would have to be
// gathered too); with a 16-bit compute dtype, stage 2 keeps the graph's 16-bit
// compute gradients whole (counted by memory()); bf16 gradient communication is
// stages 0/1 only; the graph is built whole on every rank before sharding (no
// sharded initialisation) and stays sharded when the engine is destroyed.
// io::save_training_checkpoint refuses a sharded optimizer (its state() is only
// this rank's part): use comm::save_zero_checkpoint.
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.hpp"
#include "comm/data_parallel.hpp"
#include "comm/data_parallel_common.hpp"
#include "core/nn/graph.hpp"
#include "core/optim/optimizer.hpp"
#include "core/stream_interval.hpp"

namespace cohort::comm {

struct ShardLayout {
  int64_t total = 0;       // N
  int world = 1;           // W
  int64_t shard_size = 0;  // S = ceil(N / W)

  static ShardLayout make(int64_t total, int world);
  int64_t padded() const { return shard_size * world; }
  int64_t begin(int rank) const;
  int64_t end(int rank) const;
  int64_t count(int rank) const { return end(rank) - begin(rank); }
  // The rank owning flat element `element` (< total).
  int owner(int64_t element) const { return static_cast<int>(element / shard_size); }
};

enum class GradReduction {
  bucketed,        // per bucket during backward, each shard's part reduced to its owner
  reduce_scatter,  // one reduce-scatter of a transient padded buffer after backward
};

struct ZeroOptions {
  int stage = 1;                                           // 0 (plain data parallel), 1, 2, 3
  size_t bucket_bytes = size_t{25} << 20;                  // of f32 gradients
  GradReduction grad_reduction = GradReduction::bucketed;  // stages 2, 3
  bool sync_batch_norm = true;
  bool bf16_gradients = false;  // stages 0, 1 (DataParallel)
  // Stage 3: gather the next layers' parameters while the current layer runs.
  // Results are bitwise the same. In flight at once: the layers following the
  // running one in the pass's order until their bytes reach prefetch_bytes, at
  // least one (0: exactly the next layer). A larger window hides the gathers of
  // big layers behind several small ones (a conv behind BN and ReLU), at the
  // price of that many more bytes gathered at once.
  bool prefetch = true;
  size_t prefetch_bytes = 0;
};

// Bytes one rank holds, summed over the distinct storages its tensors use.
struct ZeroMemory {
  int stage = 0, rank = 0, world = 1;
  int64_t num_parameters = 0;
  // Now (between steps: what persists).
  int64_t parameters = 0;  // f32 master weights (+ 16-bit compute copies)
  int64_t gradients = 0;   // f32 gradients (+ 16-bit compute gradients)
  int64_t optimizer = 0;   // optimizer state
  // Most bytes alive at once since construction, of transient buffers:
  int64_t peak_gathered_parameters = 0;  // stage 3: gathered layer parameters (+ prefetch)
  int64_t peak_gradient_staging = 0;     // stages 2, 3: bucket / reduce-scatter buffers
  // What one transient buffer of this engine can take (known before any step):
  int64_t largest_bucket = 0;  // stages 2, 3 (bucketed): the largest gradient bucket
  int64_t largest_layer = 0;   // stage 3: the largest layer's parameters, gathered
  // Stage 3: the most gathered parameter bytes alive at once: largest_layer, or
  // with prefetch the largest run of a layer and its prefetch window.
  int64_t largest_gathered = 0;
  int64_t persistent() const { return parameters + gradients + optimizer; }
};

// Caveats (not yet handled):
//  - Stage 3 makes every forward collective (each layer's parameters are gathered):
//    all ranks must run the same number of forwards, so evaluation with an
//    EvalSampler (ranks may have one sample more or less) must pad or gather the
//    full weights first (gather_parameters()).
//  - With fp16 loss scaling, stages 2/3 see only their gradient shard: step()
//    sums the skip flag over ranks *in place*, so all ranks skip together and the
//    LossScaler that owns the flag (LossScaler::skip_flag()) then updates alike on
//    every rank. Call step() before LossScaler::update().
class ZeroDataParallel {
 public:
  // Collective: parameters and buffers become rank 0's, then each rank keeps
  // what its stage shards and builds its (sharded) optimizer from `optimizer`
  // (whose shard fields are set here). Sets the graph's hooks and, with
  // sync_batch_norm, the BatchNorm reducers; the destructor removes them.
  ZeroDataParallel(core::nn::Graph& graph, Communicator& comm, const ZeroOptions& options,
                   const core::optim::OptimizerConfig& optimizer);
  // No communicator: allocates what rank `rank` of `world` would hold, for
  // memory planning (memory()); it cannot train.
  static std::unique_ptr<ZeroDataParallel> plan(core::nn::Graph& graph, int rank, int world,
                                                const ZeroOptions& options,
                                                const core::optim::OptimizerConfig& optimizer);
  ~ZeroDataParallel();
  ZeroDataParallel(const ZeroDataParallel&) = delete;
  ZeroDataParallel& operator=(const ZeroDataParallel&) = delete;

  // Before each backward; pass the same `accumulate` to Graph::backward. `last`:
  // the last micro-batch of the step (stages 0/1 communicate only then).
  void prepare_backward(core::Context& ctx, bool accumulate = false, bool last = true);
  // Waits for the gradient reductions (device backends: orders ctx's stream).
  void finish_backward(core::Context& ctx);
  // Communication backward did not hide, one finish_backward measurement per
  // call, oldest unread first (see DataParallel::exposed_comm_seconds: device
  // time, maybe a few steps old). With micro-batches at stages 2/3 every
  // micro-batch reduces, and only the last one's wait (prepare_backward's `last`)
  // is measured (a lower bound on the step's exposure).
  double exposed_comm_seconds();
  // Scales the gradients so that their global L2 norm is at most max_norm;
  // returns the norm before clipping (f32 [1] on the device, not read back).
  // Collective for stages 2/3.
  core::Tensor clip_grad_norm(core::Context& ctx, double max_norm);
  // Updates this rank's shard, then makes the parameters whole again (stages
  // 1/2: all-gather) or leaves them sharded (3). `skip`: see Optimizer::step;
  // stages 2/3 replace its value by the sum over ranks (collective).
  void step(core::Context& ctx, double lr, const core::Tensor& skip = {});

  int stage() const { return m_options.stage; }
  int rank() const { return m_rank; }
  core::nn::Graph& graph() { return m_graph; }
  // Throws for a memory plan (no communicator).
  Communicator& communicator() const { return comm("communicator"); }
  const ShardLayout& layout() const { return m_layout; }
  core::optim::Optimizer& optimizer() { return *m_optimizer; }
  // Stage 3: this rank's parameter shard (S elements; the tail past N is zero).
  const core::Tensor& parameter_shard() const { return m_param_shard; }
  // Stages 2/3: this rank's averaged gradient shard (S elements).
  const core::Tensor& gradient_shard() const { return m_grad_shard; }
  ZeroMemory memory() const;

  // Collective. The whole optimizer state by name on rank 0 (the keys and shapes
  // of an unsharded Optimizer::state()); empty on other ranks.
  std::map<std::string, core::Tensor> gather_optimizer_state(core::Context& ctx);
  // Every rank passes the whole state by name (as gathered above, e.g. read
  // from a checkpoint written at another world size) and keeps its shard's part.
  void load_optimizer_state(core::Context& ctx, const std::map<std::string, core::Tensor>& full);
  // Collective for stage 3. All N parameters, f32, on every rank (a new tensor).
  core::Tensor gather_parameters(core::Context& ctx);
  // Every rank passes all N parameters (f32, flat, any device; e.g. read from a
  // checkpoint): stage 3 keeps its shard (and drops gathered layer copies, now
  // stale), stages 0-2 overwrite the graph's parameters and refresh the 16-bit
  // compute copies. Not collective; queued on ctx's stream.
  void load_parameters(core::Context& ctx, const core::Tensor& full);

 private:
  void finish_reductions(core::Context& ctx);
  struct Bucket {
    int64_t offset = 0, count = 0;  // range of the flat gradient space
    std::vector<size_t> params;     // indices into graph.parameters()
    int pending = 0;
    bool launched = false;
    core::Tensor staging;        // transient gradients of the bucket (bucketed reduction)
    std::vector<WorkPtr> works;  // one reduce per shard owner the bucket meets
  };

  ZeroDataParallel(core::nn::Graph& graph, Communicator* comm, int rank, int world,
                   const ZeroOptions& options, const core::optim::OptimizerConfig& optimizer);
  void shard_state(core::Context& ctx, const core::optim::OptimizerConfig& optimizer);
  Communicator& comm(const char* what) const;

  // Stages 2/3.
  void before_layer(core::Context& ctx, core::nn::NodeId id, core::nn::Layer& layer, bool backward);
  void after_layer(core::nn::NodeId id, core::nn::Layer& layer, bool backward);
  void on_grads_ready(std::span<core::nn::Parameter* const> params);
  void ensure_staging(core::Context& ctx, Bucket& bucket);
  // Points parameter `param`'s gradient views at `storage`, whose element 0 is flat
  // element `storage_offset` (an undefined storage: no gradient storage).
  void point_grads(size_t param, const core::Tensor& storage, int64_t storage_offset);
  void launch(size_t bucket);
  void finish(core::Context& ctx, Bucket& bucket);
  void finish_completed(core::Context& ctx);
  void keep_shard_part(core::Context& ctx, const core::Tensor& reduced, int64_t reduced_offset);
  void add_staging_bytes(int64_t bytes);
  // Stages 1, 2: every rank's updated shard into the padded parameter buffer.
  void gather_padded(core::Context& ctx);
  // Whether the parameter has its own 16-bit compute copy (else compute aliases value).
  bool has_compute_copy(const core::nn::Parameter& p) const;

  // Stage 3.
  // The flat range [lo, hi) of a layer's parameters (contiguous); lo >= hi when it has none.
  std::pair<int64_t, int64_t> layer_range(const core::nn::Layer& layer) const;
  // One layer's parameters being gathered: a buffer of its range and the
  // broadcasts filling it (node -1: none).
  struct LayerGather {
    core::nn::NodeId node = -1;
    core::Tensor buffer;
    std::vector<WorkPtr> works;
  };
  // Makes the layer's parameters available (from the prefetch when it was
  // predicted) and, with prefetch, tops up the gathers of the layers after it in
  // this pass's order (prefetch_bytes).
  void gather_layer(core::Context& ctx, core::nn::NodeId id, core::nn::Layer& layer, bool backward);
  LayerGather start_gather(core::Context& ctx, core::nn::NodeId id, const core::nn::Layer& layer);
  // Waits for `gather` and points the layer's parameter views into its buffer.
  void install_gather(core::Context& ctx, LayerGather& gather, core::nn::Layer& layer);
  void drop_prefetch();
  // The layer with parameters that runs after `id` in forward order when every
  // layer runs, or in backward order among the layers backward runs; -1 at the end.
  core::nn::NodeId next_param_layer(core::nn::NodeId id, bool backward) const;
  void release_layer(core::nn::NodeId id, core::nn::Layer& layer);

  core::nn::Graph& m_graph;
  Communicator* m_comm;  // null for a plan
  int m_rank = 0;
  ZeroOptions m_options;
  ShardLayout m_layout;
  std::unique_ptr<core::optim::Optimizer> m_optimizer;
  std::unique_ptr<DataParallel> m_dp;  // stages 0, 1
  std::unique_ptr<core::ops::StatsReducer> m_stats_reducer;

  core::Tensor m_padded_params;  // stages 1, 2: W * S; the graph's parameters are its first N
  core::Tensor m_param_shard;    // stage 3: S
  core::Tensor m_grad_shard;     // stages 2, 3: S

  // Gradient reduction (stages 2, 3).
  std::vector<Bucket> m_buckets;
  detail::BucketIndex m_bucket_index;
  std::vector<size_t> m_launch_order;  // buckets launched and not yet finished
  core::Tensor m_full_grads;           // reduce_scatter: W * S during backward
  core::Context* m_ctx = nullptr;
  bool m_armed = false, m_accumulate = false;
  int64_t m_staging_bytes = 0, m_peak_staging_bytes = 0;

  // Gathered parameters (stage 3), per node.
  std::vector<core::Tensor> m_gathered;
  std::vector<core::nn::NodeId> m_param_layers;  // nodes with parameters, ascending
  std::deque<LayerGather> m_prefetch;  // the next layers' gathers in flight, in pass order
  std::vector<bool> m_runs_backward;   // per node, from the last prepare_backward
  int64_t m_gathered_bytes = 0, m_peak_gathered_bytes = 0;  // prefetch included
  double m_exposed_seconds = 0;
  std::unique_ptr<core::StreamInterval> m_exposed;
  bool m_exposed_last = true;  // the armed backward is the step's last micro-batch
};

// Memory per rank of `build_model`'s graph (built on the CPU here) for each stage
// in `stages`, for rank `rank` of `world`, measured on ZeroDataParallel::plan.
std::vector<ZeroMemory> zero_memory_table(const std::function<void(core::nn::Graph&)>& build_model,
                                          int world, int rank,
                                          const core::optim::OptimizerConfig& optimizer,
                                          const std::vector<int>& stages = {0, 1, 2, 3});
// Prints the table (MiB per rank: parameters, gradients, optimizer state, total,
// and the ratio to stage 0).
void print_zero_memory_table(const std::vector<ZeroMemory>& rows, const std::string& model,
                             const std::string& optimizer, std::FILE* out = stdout);

struct ZeroReportOptions {
  int world_size = 8;
  int rank = 0;
  std::string optimizer = "adamw";  // "sgd" (momentum 0.9) or "adamw"
};
// Builds the table for `build_model` and prints it. The ResNet-50 entry is
// run_zero_memory_report(options) in comm/zero_report.hpp (it needs cohort_models).
std::vector<ZeroMemory> run_zero_memory_report(
    const ZeroReportOptions& options, const std::function<void(core::nn::Graph&)>& build_model,
    const std::string& model, std::FILE* out = stdout);

}  // namespace cohort::comm
