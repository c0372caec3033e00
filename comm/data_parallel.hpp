#pragma once
// Data parallelism over a model graph: parameters and buffers broadcast from
// rank 0; gradients grouped into buckets (contiguous ranges of the graph's flat
// gradient buffer, built in reverse order of the parameters, which is the order
// backward finishes them); each bucket's all-reduce (average) starts from the
// graph's gradient-ready hook as soon as its last gradient is final, so it
// overlaps the rest of backward; frozen parameters split buckets and are never
// communicated; gradient accumulation over micro-batches communicates once;
// optional bf16 gradient communication and global gradient-norm clipping.
//
//   DataParallel dp(graph, comm, {});
//   dp.broadcast_state(ctx);
//   for each step:
//     for k in 0..K-1:
//       graph.forward(...);
//       dp.prepare_backward(ctx, /*communicate=*/k == K - 1);
//       graph.backward(ctx, {{loss, seed_of_1_over_K}}, /*accumulate=*/k > 0);
//     dp.finish_backward(ctx);   // waits for the buckets; grads are averaged
//     optimizer.step(ctx, lr);
#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.hpp"
#include "comm/data_parallel_common.hpp"
#include "core/nn/graph.hpp"
#include "core/ops/ops.hpp"
#include "core/stream_interval.hpp"

namespace cohort::comm {

struct DataParallelOptions {
  size_t bucket_bytes = size_t{25} << 20;  // of f32 gradients
  bool bf16_gradients = false;             // communicate gradients as bf16
  bool sync_batch_norm = true;             // BatchNorm statistics over all ranks
};

class DataParallel {
 public:
  DataParallel(core::nn::Graph& graph, Communicator& comm, const DataParallelOptions& options);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Every parameter and buffer becomes rank 0's (blocking).
  void broadcast_state(core::Context& ctx);
  // Arms (communicate = true) or disarms the hook for the coming backward. The
  // buckets are rebuilt when parameters were frozen or unfrozen since the last call.
  void prepare_backward(core::Context& ctx, bool communicate);
  // Orders ctx's stream after every bucket (host backends: waits) and finishes
  // bf16 buckets. Throws if a bucket never became ready.
  void finish_backward(core::Context& ctx);
  // Scales the gradients so that their global L2 norm is at most max_norm; returns
  // the norm before clipping as a 1-element f32 tensor on the graph's device
  // (nothing is read back: the step stays free of host synchronisation).
  core::Tensor clip_grad_norm(core::Context& ctx, double max_norm);

  struct Bucket {
    int64_t offset = 0, count = 0;  // range of the flat gradient buffer
    std::vector<size_t> params;     // indices into graph.parameters()
    int pending = 0;
    WorkPtr work;
    core::Tensor staging;  // bf16 copy when bf16_gradients
  };
  const std::vector<Bucket>& buckets() const { return m_buckets; }
  // Communication that backward did not hide: from the end of backward's compute
  // to the end of the last gradient reduction, as the device ran it (a CUDA
  // stream: timing events, read without synchronising, so it can be a few steps
  // old; the CPU: the host's wait). Each call takes the oldest finish_backward
  // measurement not yet returned that the device has completed (up to
  // StreamInterval::kSlots wait), so calling it once per step returns every
  // step's value once; with none new it repeats the last value; 0 before any.
  double exposed_comm_seconds();
  // Elements all-reduced since construction (tests: frozen parameters cost nothing).
  int64_t communicated_elements() const { return m_communicated; }

 private:
  void on_ready(std::span<core::nn::Parameter* const> params);
  void launch(Bucket& bucket);

  core::nn::Graph& m_graph;
  Communicator& m_comm;
  DataParallelOptions m_options;
  std::vector<Bucket> m_buckets;
  detail::BucketIndex m_bucket_index;
  std::unique_ptr<core::ops::StatsReducer> m_stats_reducer;
  core::Context* m_ctx = nullptr;
  bool m_armed = false;
  double m_exposed_seconds = 0;
  std::unique_ptr<core::StreamInterval> m_exposed;
  int64_t m_communicated = 0;
};

// SyncBatchNorm's statistics reduction over a communicator (sum, blocking on
// the stream). Used by DataParallel; exposed for tests.
std::unique_ptr<core::ops::StatsReducer> make_stats_reducer(Communicator& comm);
// Sets `reducer` on every BatchNorm2d layer of the graph; returns how many.
int set_batch_norm_reducer(core::nn::Graph& graph, core::ops::StatsReducer* reducer);

}  // namespace cohort::comm
