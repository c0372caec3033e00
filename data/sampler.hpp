#pragma once
// Distributed sampling of a dataset of N samples across W ranks.
//
// Training (TrainSampler): one global order per epoch, a permutation of 0..N-1 fixed
// by (seed, epoch) alone (splitmix64 + Fisher-Yates, so it is the same on every
// platform and for every world size). Global step s consumes positions
// [s*G, (s+1)*G) of that order, G = W * B (B = per-rank batch); rank r takes the
// r-th block of B. Every rank runs steps_per_epoch() = floor(N / G) steps; the
// N mod G samples at the end of each epoch's order are left out (the "ragged
// tail" is dropped, never padded, so no sample counts twice in a step; a new order
// each epoch drops different samples). With the same G, any W gives the same global
// batches: 1 rank x 8 and 4 ranks x 2 see the same 8 samples per step.
//
// Evaluation (EvalSampler): the natural order 0..N-1 cut into W contiguous ranges
// (the first N mod W ranks get one sample more); every sample is visited exactly
// once, nothing is padded, so ranks can differ by one sample and in batch count.
// A rank may have no samples at all when N < W. Evaluation must therefore not run
// a collective per batch; reduce metrics once at the end.
#include <cstdint>
#include <vector>

namespace cohort::data {

// Where a training run stands, independent of the world size: resuming with
// another W (same global batch) continues the same sequence.
struct SamplerPosition {
  uint64_t seed = 0;
  int64_t dataset_size = 0;
  int64_t epoch = 0;
  int64_t samples_done = 0;  // global samples consumed in `epoch` (a multiple of G)
};

// The global order of `epoch`: a permutation of 0..n-1 (identity when !shuffle).
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle = true);

class TrainSampler {
 public:
  struct Options {
    int64_t dataset_size = 0;
    int64_t batch_size = 1;  // per rank
    int rank = 0;
    int world_size = 1;
    uint64_t seed = 0;
    bool shuffle = true;
  };
  // Throws cohort::Error for an empty dataset, a bad rank/world/batch, or fewer
  // samples than one global batch (an epoch of zero steps would train on nothing).
  explicit TrainSampler(const Options& options);

  int64_t steps_per_epoch() const { return m_steps; }
  int64_t global_batch() const { return m_global_batch; }
  int64_t dropped_per_epoch() const { return m_options.dataset_size - m_steps * m_global_batch; }

  // This rank's indices at (epoch, step), without touching the iteration state.
  std::vector<int64_t> batch(int64_t epoch, int64_t step) const;

  // This rank's next batch; after the last step of an epoch the next epoch begins.
  std::vector<int64_t> next();
  int64_t epoch() const { return m_epoch; }
  int64_t step() const { return m_step; }  // the step next() returns
  void set_epoch(int64_t epoch);           // jump to step 0 of `epoch`

  SamplerPosition position() const;
  // Continues from `position` (e.g. from a checkpoint). Throws when the seed or
  // dataset size differ, or samples_done is not a whole number of this world's
  // global batches.
  void restore(const SamplerPosition& position);

 private:
  const std::vector<int64_t>& order(int64_t epoch);

  Options m_options;
  int64_t m_global_batch = 0, m_steps = 0;
  int64_t m_epoch = 0, m_step = 0;
  int64_t m_cached_epoch = -1;
  std::vector<int64_t> m_cached_order;
};

class EvalSampler {
 public:
  // Throws for an empty dataset or a bad rank/world/batch. N < W is allowed.
  EvalSampler(int64_t dataset_size, int64_t batch_size, int rank, int world_size);

  // The contiguous range [begin, end) of rank `rank`.
  static int64_t range_begin(int64_t dataset_size, int rank, int world_size);
  int64_t begin() const { return m_begin; }
  int64_t end() const { return m_end; }
  int64_t count() const { return m_end - m_begin; }
  int64_t batches() const;      // ceil(count / B); 0 for a rank without samples
  int64_t max_batches() const;  // the most batches any rank has (rank 0's)
  // Batch b of this rank (the last may be short).
  std::vector<int64_t> batch(int64_t b) const;

 private:
  int64_t m_dataset_size, m_batch;
  int m_rank, m_world;
  int64_t m_begin = 0, m_end = 0;
};

}  // namespace cohort::data
