// Distributed sampler: disjoint, covering, equal steps, world-size independent global
// order, exact mid-epoch resume; evaluation visits every sample once.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "core/error.hpp"
#include "data/sampler.hpp"

namespace cohort::data {
namespace {

TEST(SamplerOrder, IsAPermutationFixedBySeedAndEpoch) {
  const std::vector<int64_t> a = epoch_order(1000, 7, 3);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  EXPECT_EQ(a, epoch_order(1000, 7, 3));
  EXPECT_NE(a, epoch_order(1000, 7, 4));
  EXPECT_NE(a, epoch_order(1000, 8, 3));
  EXPECT_EQ(epoch_order(10, 7, 3, /*shuffle=*/false),
            std::vector<int64_t>(iota.begin(), iota.begin() + 10));
  // Regression guard: the order is part of what a resumed run relies on.
  const std::vector<int64_t> golden = epoch_order(10, 0, 0);
  EXPECT_EQ(golden, (std::vector<int64_t>{6, 2, 4, 1, 8, 0, 9, 5, 3, 7}));
}

// For world sizes 1..8: every step's batches are disjoint across ranks, each epoch
// covers the first steps*G positions of the global order exactly once, and every
// rank runs the same number of steps.
TEST(SamplerTrain, DisjointCoveringEqualStepsForWorldSizes1To8) {
  for (int64_t n : {37, 100}) {
    for (int64_t b : {1, 3}) {
      for (int w = 1; w <= 8; ++w) {
        if (n < w * b) continue;
        std::vector<TrainSampler> ranks;
        for (int r = 0; r < w; ++r)
          ranks.emplace_back(TrainSampler::Options{n, b, r, w, 42, true});
        const int64_t steps = n / (w * b);
        for (const TrainSampler& s : ranks)
          ASSERT_EQ(s.steps_per_epoch(), steps);
        for (int64_t epoch = 0; epoch < 3; ++epoch) {
          const std::vector<int64_t> order = epoch_order(n, 42, epoch);
          std::vector<int64_t> seen;
          for (int64_t step = 0; step < steps; ++step) {
            std::set<int64_t> in_step;
            for (int r = 0; r < w; ++r) {
              const std::vector<int64_t> got = ranks[r].next();
              ASSERT_EQ(got, ranks[r].batch(epoch, step));
              ASSERT_EQ(static_cast<int64_t>(got.size()), b);
              for (int64_t i : got)
                ASSERT_TRUE(in_step.insert(i).second) << "duplicate " << i;
              seen.insert(seen.end(), got.begin(), got.end());
            }
          }
          // Concatenating ranks in order, step by step, replays the global order.
          ASSERT_EQ(seen, std::vector<int64_t>(order.begin(), order.begin() + steps * w * b))
              << "n=" << n << " b=" << b << " w=" << w << " epoch=" << epoch;
          std::set<int64_t> unique(seen.begin(), seen.end());
          ASSERT_EQ(unique.size(), seen.size());
          for (const TrainSampler& s : ranks)
            ASSERT_EQ(s.epoch(), epoch + 1);
        }
      }
    }
  }
}

// The same global batch G split over different world sizes gives the same global
// batches: what multi-rank equivalence tests (N ranks x B/N == 1 rank x B) need.
TEST(SamplerTrain, SameGlobalBatchesForEveryWorldSize) {
  const int64_t n = 101, g = 24;
  std::vector<std::vector<std::set<int64_t>>> per_world;
  for (int w : {1, 2, 3, 4, 6, 8}) {
    std::vector<std::set<int64_t>> batches;
    for (int64_t epoch = 0; epoch < 2; ++epoch)
      for (int64_t step = 0; step < n / g; ++step) {
        std::set<int64_t> global;
        for (int r = 0; r < w; ++r) {
          const TrainSampler s(TrainSampler::Options{n, g / w, r, w, 5, true});
          for (int64_t i : s.batch(epoch, step))
            global.insert(i);
        }
        batches.push_back(global);
      }
    per_world.push_back(batches);
  }
  for (size_t k = 1; k < per_world.size(); ++k)
    EXPECT_EQ(per_world[k], per_world[0]);
}

TEST(SamplerTrain, ResumeMidEpochContinuesExactly) {
  const TrainSampler::Options o{50, 4, 1, 3, 9, true};  // G = 12, 4 steps per epoch
  TrainSampler original(o);
  for (int i = 0; i < 6; ++i)
    original.next();  // into epoch 1, step 2
  const SamplerPosition saved = original.position();
  EXPECT_EQ(saved.epoch, 1);
  EXPECT_EQ(saved.samples_done, 24);
  TrainSampler resumed(o);
  resumed.restore(saved);
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(resumed.next(), original.next()) << "step " << i;

  // Resuming on another world size with the same global batch continues the same
  // global sequence.
  TrainSampler a(TrainSampler::Options{50, 6, 0, 2, 9, true}),
      b(TrainSampler::Options{50, 6, 1, 2, 9, true});
  for (int i = 0; i < 3; ++i) {
    a.next();
    b.next();
  }
  std::vector<TrainSampler> four;
  for (int r = 0; r < 4; ++r) {
    four.emplace_back(TrainSampler::Options{50, 3, r, 4, 9, true});
    four.back().restore(a.position());
  }
  for (int step = 0; step < 5; ++step) {
    std::vector<int64_t> two_ranks = a.next(), tail = b.next();
    two_ranks.insert(two_ranks.end(), tail.begin(), tail.end());
    std::vector<int64_t> four_ranks;
    for (TrainSampler& s : four) {
      const auto part = s.next();
      four_ranks.insert(four_ranks.end(), part.begin(), part.end());
    }
    ASSERT_EQ(four_ranks, two_ranks) << "step " << step;
  }
}

TEST(SamplerTrain, RestoreRejectsAnotherRunsPosition) {
  TrainSampler s(TrainSampler::Options{50, 4, 0, 2, 9, true});  // G = 8
  SamplerPosition p = s.position();
  p.seed = 10;
  EXPECT_THROW(s.restore(p), Error);
  p = s.position();
  p.dataset_size = 51;
  EXPECT_THROW(s.restore(p), Error);
  p = s.position();
  p.samples_done = 12;  // not a whole number of global batches of 8
  EXPECT_THROW(s.restore(p), Error);
}

TEST(SamplerTrain, EmptySplitOrFewerSamplesThanAGlobalBatchIsAnError) {
  EXPECT_THROW(TrainSampler(TrainSampler::Options{0, 1, 0, 1, 0, true}), Error);
  try {
    TrainSampler(TrainSampler::Options{7, 2, 0, 4, 0, true});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than one global batch"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(TrainSampler(TrainSampler::Options{10, 1, 4, 4, 0, true}), Error);  // bad rank
  const TrainSampler ok(TrainSampler::Options{8, 2, 3, 4, 0, true});
  EXPECT_EQ(ok.steps_per_epoch(), 1);
  EXPECT_EQ(ok.dropped_per_epoch(), 0);
}

TEST(SamplerEval, EverySampleExactlyOnceWithoutPadding) {
  for (int64_t n : {1, 2, 5, 17, 64}) {
    for (int w = 1; w <= 8; ++w) {
      std::vector<int64_t> seen;
      int64_t most = 0, least = n;
      for (int r = 0; r < w; ++r) {
        const EvalSampler s(n, 3, r, w);
        for (int64_t b = 0; b < s.batches(); ++b) {
          const std::vector<int64_t> batch = s.batch(b);
          ASSERT_FALSE(batch.empty());
          ASSERT_LE(batch.size(), 3u);
          seen.insert(seen.end(), batch.begin(), batch.end());
        }
        most = std::max(most, s.count());
        least = std::min(least, s.count());
        EXPECT_LE(s.batches(), s.max_batches());
      }
      std::vector<int64_t> iota(static_cast<size_t>(n));
      std::iota(iota.begin(), iota.end(), 0);
      ASSERT_EQ(seen, iota) << "n=" << n << " w=" << w;  // in order, once each
      EXPECT_LE(most - least, 1);
      if (n < w) {  // ranks beyond the data get nothing (documented)
        const EvalSampler last(n, 3, w - 1, w);
        EXPECT_EQ(last.count(), 0);
        EXPECT_EQ(last.batches(), 0);
      }
    }
  }
  EXPECT_THROW(EvalSampler(0, 1, 0, 1), Error);
}

}  // namespace
}  // namespace cohort::data
