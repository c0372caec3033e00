// Entry point of the gpu suite. Without a usable GPU every test exits with 77,
// which CTest (SKIP_RETURN_CODE 77) reports as skipped, with the reason printed.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "core/device.hpp"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--gtest_list_tests", 18) == 0) listing = true;
  ::testing::InitGoogleTest(&argc, argv);
  if (!listing && !cohort::core::cuda_available()) {
#ifdef COHORT_WITH_CUDA
    std::printf("SKIPPED: this build has CUDA but no GPU is visible to the process\n");
#else
    std::printf("SKIPPED: this build has no CUDA backend (CPU-only build)\n");
#endif
    return 77;
  }
  return RUN_ALL_TESTS();
}
