// Failure paths of the CUDA backend: out-of-memory is an OutOfMemoryError that
// says how much was asked (in MiB), f64 is refused with a message naming the op
// and the dtype, and the context's backend state works after an error.
// CUDA-only: these call the backend directly.
#ifdef COHORT_WITH_CUDA
#include <gtest/gtest.h>

#include <string>

#include "core/cuda/context_cuda.hpp"
#include "core/ops/cuda/cuda_ops.hpp"
#include "core/ops/ops.hpp"
#include "tests/gpu/test_gpu_common.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::gputest {
namespace {

using testing::expect_error;

TEST(GpuErrors, OutOfMemoryIsReportedInMiB) {
  const int64_t one_pib = int64_t{1} << 50;
  try {
    Tensor t = Tensor::empty(Shape{one_pib}, DType::u8, Device::cuda(0), gpu().stream());
    ADD_FAILURE() << "allocating 1 PiB succeeded?";
  } catch (const OutOfMemoryError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("MiB"), std::string::npos) << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected cohort::OutOfMemoryError, got: " << e.what();
  }
  // The device is still usable afterwards.
  const Tensor x = to_gpu(random_cpu(Shape{16}, 1));
  EXPECT_EQ(values(core::ops::relu(gpu(), x)).size(), 16u);
}

TEST(GpuErrors, F64IsRefusedWithAClearMessage) {
  const Tensor x64 = Tensor::zeros(Shape{2, 3, 3, 4}, DType::f64, Device::cuda(0), gpu().stream());
  // Through the public dispatchers and straight into the backend.
  expect_error([&] { core::ops::relu(gpu(), x64); }, {"relu", "f64"});
  expect_error([&] { core::ops::cuda::relu(gpu(), x64); }, {"relu", "f64", "CUDA"});
  expect_error([&] { core::ops::cuda::sum(gpu(), x64); }, {"sum", "f64"});
  expect_error([&] { core::ops::cuda::cast(gpu(), x64, DType::f32); }, {"cast", "f64"});
  const Tensor w64 = Tensor::zeros(Shape{5, 3, 3, 4}, DType::f64, Device::cuda(0), gpu().stream());
  expect_error([&] { core::ops::cuda::conv2d(gpu(), x64, w64, Tensor(), {}); }, {"conv2d", "f64"});
  core::ops::BatchNormArgs args;
  core::ops::BatchNormSaved saved;
  Tensor p = to_gpu(Tensor::zeros(Shape{4}, DType::f32));
  Tensor rm = p.clone(gpu().stream()), rv = p.clone(gpu().stream());
  expect_error([&] { core::ops::cuda::batch_norm_train(gpu(), x64, p, p, rm, rv, args, saved); },
               {"batch_norm_train", "f64"});
}

TEST(GpuErrors, BatchNormParametersMustBeF32) {
  const Tensor x = to_gpu(random_cpu(Shape{2, 2, 2, 4}, 3), DType::bf16);
  Tensor p16 = to_gpu(Tensor::zeros(Shape{4}, DType::f32), DType::bf16);
  Tensor p = to_gpu(Tensor::zeros(Shape{4}, DType::f32));
  Tensor rm = p.clone(gpu().stream()), rv = p.clone(gpu().stream());
  core::ops::BatchNormArgs args;
  core::ops::BatchNormSaved saved;
  expect_error([&] { core::ops::cuda::batch_norm_train(gpu(), x, p16, p, rm, rv, args, saved); },
               {"batch_norm_train", "gamma", "bf16"});
}

TEST(GpuErrors, BackendStateIsCreatedOncePerContext) {
  Context ctx(Device::cuda(0));
  EXPECT_EQ(ctx.backend_state(), nullptr);
  core::cuda::CudaBackend& a = core::cuda::cuda_backend(ctx);
  core::cuda::CudaBackend& b = core::cuda::cuda_backend(ctx);
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.stream(), ctx.stream());
  // Workspace grows and keeps its pointer for smaller requests.
  void* w1 = a.workspace(1 << 20);
  void* w2 = a.workspace(1 << 10);
  EXPECT_EQ(w1, w2);
  EXPECT_GE(a.workspace_size(), size_t{1} << 20);
  EXPECT_NE(a.cudnn(), nullptr);
  EXPECT_NE(a.cublas_lt(), nullptr);
}

}  // namespace
}  // namespace cohort::gputest
#endif  // COHORT_WITH_CUDA
