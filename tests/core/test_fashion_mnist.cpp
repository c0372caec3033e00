// The README's demo as a test: one epoch of the small CNN on the CPU reaches at
// least 85% test accuracy on the real Fashion-MNIST test set (10000 images).
#include <gtest/gtest.h>

#include <filesystem>

#include "launch/fashion_mnist_demo.hpp"

TEST(FashionMnist, OneEpochOnTheCpuReaches85PercentTestAccuracy) {
  cohort::launch::FashionMnistOptions o;
  ASSERT_TRUE(std::filesystem::exists(o.data_dir + "/train-images-idx3-ubyte.gz"))
      << o.data_dir << " is missing: apt-get install dataset-fashion-mnist (tools/install-deps.sh)";
  o.device = cohort::core::Device::cpu();
  o.epochs = 1;
  o.verbose = false;
  const cohort::launch::FashionMnistResult r = cohort::launch::train_fashion_mnist(o);
  std::printf("Fashion-MNIST: test accuracy %.2f%% after %lld steps (%.1f s)\n",
              100 * r.test_accuracy, static_cast<long long>(r.steps), r.seconds);
  EXPECT_GE(r.test_accuracy, 0.85);
}

TEST(FashionMnist, MissingDataIsAClearError) {
  cohort::launch::FashionMnistOptions o;
  o.data_dir = "/nonexistent/fashion";
  try {
    cohort::launch::train_fashion_mnist(o);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/fashion"), std::string::npos) << e.what();
  }
}

TEST(FashionMnist, NonsenseOptionsAreRefusedByName) {
  auto error_of = [](cohort::launch::FashionMnistOptions o) {
    try {
      cohort::launch::train_fashion_mnist(o);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  cohort::launch::FashionMnistOptions o;
  o.batch_size = 0;
  EXPECT_NE(error_of(o).find("--batch must be >= 1"), std::string::npos);
  o.batch_size = 100000;
  EXPECT_NE(error_of(o).find("larger than the 60000 training images"), std::string::npos);
  o = {};
  o.epochs = 0;
  EXPECT_NE(error_of(o).find("--epochs"), std::string::npos);
  o = {};
  o.lr = -1;
  EXPECT_NE(error_of(o).find("--lr"), std::string::npos);
}
