// The README's main job across ranks: the Fashion-MNIST demo trained data-parallel
// (plain and ZeRO-3) on a slice of the real training set. Every rank must report
// the same test accuracy (counts summed over ranks), both engines must agree, the
// per-rank step-time breakdown must cover every rank, and bad settings must be
// refused on every rank before anything is communicated.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "launch/fashion_mnist_demo.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"

namespace cohort::launch {
namespace {

FashionMnistOptions slice_options() {
  FashionMnistOptions o;
  o.device = core::Device::cpu();
  o.epochs = 1;
  o.batch_size = 64;  // global: 64, 32 or 16 per rank at 1, 2, 4 ranks
  o.max_train_samples = 2048;
  o.verbose = false;
  return o;
}

// Every rank's value, gathered.
std::vector<double> all_ranks(double value) {
  std::vector<double> out(static_cast<size_t>(mpitest::world_size()));
  MPI_Allgather(&value, 1, MPI_DOUBLE, out.data(), 1, MPI_DOUBLE, MPI_COMM_WORLD);
  return out;
}

TEST(Demo, DataParallelAndZero3TrainTheSameModelOnEveryRank) {
  const FashionMnistOptions base = slice_options();
  if (!std::filesystem::exists(base.data_dir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << base.data_dir << " is missing: apt-get install dataset-fashion-mnist";
  auto comm = mpitest::make_comm();
  double accuracy[2] = {0, 0};
  for (int stage : {0, 3}) {
    SCOPED_TRACE(::testing::Message() << "ZeRO stage " << stage);
    FashionMnistOptions o = base;
    o.comm = comm.get();
    o.zero_stage = stage;
    const FashionMnistResult r = train_fashion_mnist(o);
    if (mpitest::world_rank() == 0)
      std::printf("demo on %d rank(s), stage %d: %.2f%% after %lld steps\n", r.world_size, stage,
                  100 * r.test_accuracy, static_cast<long long>(r.steps));
    EXPECT_EQ(r.world_size, mpitest::world_size());
    EXPECT_EQ(r.steps, 2048 / 64) << "every rank runs the same steps";
    EXPECT_GE(r.test_accuracy, 0.6) << "32 steps on 2048 images";
    for (double a : all_ranks(r.test_accuracy))
      EXPECT_EQ(a, r.test_accuracy) << "ranks disagree on the summed accuracy";
    EXPECT_EQ(r.step_times.ranks.size(), static_cast<size_t>(mpitest::world_size()));
    accuracy[stage == 0 ? 0 : 1] = r.test_accuracy;
  }
  // Same data, same seeds, same updates up to summation order.
  EXPECT_NEAR(accuracy[0], accuracy[1], 0.01);
}

TEST(Demo, BadSettingsAreRefusedOnEveryRank) {
  auto comm = mpitest::make_comm();
  FashionMnistOptions o = slice_options();
  o.comm = comm.get();
  o.batch_size = 4 * 3 + 1;  // 13: no world size > 1 divides it
  if (mpitest::world_size() > 1) {
    try {
      train_fashion_mnist(o);
      ADD_FAILURE() << "an uneven global batch was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("split evenly"), std::string::npos) << e.what();
    }
  }
  FashionMnistOptions alone = slice_options();
  alone.zero_stage = 2;  // ZeRO without ranks
  EXPECT_THROW(train_fashion_mnist(alone), Error);
}

}  // namespace
}  // namespace cohort::launch
