#include "data/sampler.hpp"

#include <fmt/format.h>

#include <numeric>

#include "core/error.hpp"

namespace cohort::data {
namespace {

// splitmix64: a tiny generator whose output is fully specified (std::
// distributions are not, and would make the order differ between libraries).
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), unbiased (Lemire's multiply-and-reject).
  uint64_t below(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;
    for (;;) {
      const unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
      if (static_cast<uint64_t>(m) >= threshold) return static_cast<uint64_t>(m >> 64);
    }
  }
};

void check_world(int rank, int world_size, int64_t batch, const char* who) {
  COHORT_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
               fmt::format("{}: rank {} of world size {}", who, rank, world_size));
  COHORT_CHECK(batch >= 1, fmt::format("{}: batch size {} (must be >= 1)", who, batch));
}

}  // namespace

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle || n < 2) return order;
  // Seed from (seed, epoch) through two rounds of mixing so nearby seeds and epochs
  // give unrelated streams.
  SplitMix64 mixer{seed};
  SplitMix64 rng{mixer.next() ^ (static_cast<uint64_t>(epoch) * 0xd1342543de82ef95ull)};
  rng.next();
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

TrainSampler::TrainSampler(const Options& options) : m_options(options) {
  check_world(options.rank, options.world_size, options.batch_size, "training sampler");
  COHORT_CHECK(options.dataset_size > 0, "training sampler: the training split is empty");
  m_global_batch = options.batch_size * options.world_size;
  m_steps = options.dataset_size / m_global_batch;
  COHORT_CHECK(
      m_steps > 0,
      fmt::format("training sampler: the split has {} samples, fewer than one global "
                  "batch ({} ranks x {} per rank = {}); lower the batch size",
                  options.dataset_size, options.world_size, options.batch_size, m_global_batch));
}

const std::vector<int64_t>& TrainSampler::order(int64_t epoch) {
  if (epoch != m_cached_epoch) {
    m_cached_order = epoch_order(m_options.dataset_size, m_options.seed, epoch, m_options.shuffle);
    m_cached_epoch = epoch;
  }
  return m_cached_order;
}

std::vector<int64_t> TrainSampler::batch(int64_t epoch, int64_t step) const {
  COHORT_CHECK(epoch >= 0 && step >= 0 && step < m_steps,
               fmt::format("training sampler: step {} of epoch {} (an epoch has {} steps)", step,
                           epoch, m_steps));
  const std::vector<int64_t> all =
      epoch_order(m_options.dataset_size, m_options.seed, epoch, m_options.shuffle);
  const auto first = all.begin() + step * m_global_batch + m_options.rank * m_options.batch_size;
  return std::vector<int64_t>(first, first + m_options.batch_size);
}

std::vector<int64_t> TrainSampler::next() {
  const std::vector<int64_t>& all = order(m_epoch);
  const auto first = all.begin() + m_step * m_global_batch + m_options.rank * m_options.batch_size;
  std::vector<int64_t> out(first, first + m_options.batch_size);
  if (++m_step == m_steps) {
    m_step = 0;
    ++m_epoch;
  }
  return out;
}

void TrainSampler::set_epoch(int64_t epoch) {
  COHORT_CHECK(epoch >= 0, fmt::format("training sampler: epoch {}", epoch));
  m_epoch = epoch;
  m_step = 0;
}

SamplerPosition TrainSampler::position() const {
  return SamplerPosition{m_options.seed, m_options.dataset_size, m_epoch, m_step * m_global_batch};
}

void TrainSampler::restore(const SamplerPosition& p) {
  COHORT_CHECK(p.seed == m_options.seed && p.dataset_size == m_options.dataset_size,
               fmt::format("training sampler: the saved position is for seed {} and {} samples, "
                           "this run has seed {} and {} samples (a different dataset or seed "
                           "would not continue the same sequence)",
                           p.seed, p.dataset_size, m_options.seed, m_options.dataset_size));
  COHORT_CHECK(p.epoch >= 0 && p.samples_done >= 0 && p.samples_done % m_global_batch == 0 &&
                   p.samples_done / m_global_batch <= m_steps,
               fmt::format("training sampler: the saved position ({} samples into epoch {}) is "
                           "not a whole number of this run's global batches ({} ranks x {} = {}) "
                           "within an epoch of {} steps",
                           p.samples_done, p.epoch, m_options.world_size, m_options.batch_size,
                           m_global_batch, m_steps));
  m_epoch = p.epoch;
  m_step = p.samples_done / m_global_batch;
  if (m_step == m_steps) {
    m_step = 0;
    ++m_epoch;
  }
}

int64_t EvalSampler::range_begin(int64_t n, int rank, int world_size) {
  const int64_t base = n / world_size, extra = n % world_size;
  return rank * base + std::min<int64_t>(rank, extra);
}

EvalSampler::EvalSampler(int64_t dataset_size, int64_t batch_size, int rank, int world_size)
    : m_dataset_size(dataset_size), m_batch(batch_size), m_rank(rank), m_world(world_size) {
  check_world(rank, world_size, batch_size, "evaluation sampler");
  COHORT_CHECK(dataset_size > 0, "evaluation sampler: the evaluation split is empty");
  m_begin = range_begin(dataset_size, rank, world_size);
  m_end = range_begin(dataset_size, rank + 1, world_size);
}

int64_t EvalSampler::batches() const {
  return (count() + m_batch - 1) / m_batch;
}

int64_t EvalSampler::max_batches() const {
  const int64_t most = range_begin(m_dataset_size, 1, m_world);  // rank 0 has the most
  return (most + m_batch - 1) / m_batch;
}

std::vector<int64_t> EvalSampler::batch(int64_t b) const {
  COHORT_CHECK(
      b >= 0 && b < batches(),
      fmt::format("evaluation sampler: batch {} of rank {} (it has {})", b, m_rank, batches()));
  std::vector<int64_t> out;
  for (int64_t i = m_begin + b * m_batch; i < std::min(m_end, m_begin + (b + 1) * m_batch); ++i)
    out.push_back(i);
  return out;
}

}  // namespace cohort::data
