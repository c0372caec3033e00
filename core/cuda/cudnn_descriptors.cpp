#include "core/cuda/cudnn_descriptors.hpp"

#include <fmt/format.h>

#include <cstdlib>

#include "core/cuda/check.hpp"

namespace cohort::core::cuda {

cudnnDataType_t cudnn_data_type(DType dtype, const char* op) {
  switch (dtype) {
    case DType::f32:
      return CUDNN_DATA_FLOAT;
    case DType::f16:
      return CUDNN_DATA_HALF;
    case DType::bf16:
      return CUDNN_DATA_BFLOAT16;
    default:
      break;
  }
  COHORT_FAIL(fmt::format("{}: dtype {} is not supported on CUDA (use f32, bf16 or f16)", op,
                          dtype_name(dtype)));
}

bool cudnn_declined(cudnnStatus_t status) {
  // Only "this configuration is not offered": a generic bad parameter (what the
  // legacy API answers for an unsupported shape or mode) and the not-supported
  // kinds about the problem itself. The specific bad-parameter codes (null or
  // misaligned pointer, insufficient size, stream mismatch, ...) are our bugs, and
  // a driver, runtime or architecture mismatch is the installation's: both must
  // be seen, not hidden behind a silent fallback.
  switch (static_cast<int>(status)) {
    case CUDNN_STATUS_BAD_PARAM:
    case 2001:  // CUDNN_STATUS_INVALID_VALUE, deprecated alias of BAD_PARAM
    case CUDNN_STATUS_NOT_SUPPORTED:
    case CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN:
    case CUDNN_STATUS_NOT_SUPPORTED_SHAPE:
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE:
    case CUDNN_STATUS_NOT_SUPPORTED_LAYOUT:
    case CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT:
    case CUDNN_STATUS_NOT_SUPPORTED_PADDING:
    case CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM:
      return true;
    default:
      return false;
  }
}

bool cudnn_verbose() {
  static const bool verbose = [] {
    const char* v = std::getenv("COHORT_CUDNN_VERBOSE");
    return v != nullptr && v[0] == '1';
  }();
  return verbose;
}

TensorDescriptor::TensorDescriptor() {
  COHORT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&m_desc));
}
TensorDescriptor::~TensorDescriptor() {
  if (m_desc) COHORT_CUDNN_CHECK_PRINT(cudnnDestroyTensorDescriptor(m_desc));
}
void TensorDescriptor::set_nhwc(cudnnDataType_t type, int n, int h, int w, int c) {
  COHORT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(m_desc, CUDNN_TENSOR_NHWC, type, n, c, h, w));
}

cudnnStatus_t TensorDescriptor::derive_batch_norm(const TensorDescriptor& x,
                                                  cudnnBatchNormMode_t mode) {
  return cudnnDeriveBNTensorDescriptor(m_desc, x.get(), mode);
}

FilterDescriptor::FilterDescriptor() {
  COHORT_CUDNN_CHECK(cudnnCreateFilterDescriptor(&m_desc));
}
FilterDescriptor::~FilterDescriptor() {
  if (m_desc) COHORT_CUDNN_CHECK_PRINT(cudnnDestroyFilterDescriptor(m_desc));
}
void FilterDescriptor::set_ohwi(cudnnDataType_t type, int o, int kh, int kw, int i) {
  COHORT_CUDNN_CHECK(cudnnSetFilter4dDescriptor(m_desc, type, CUDNN_TENSOR_NHWC, o, i, kh, kw));
}

ConvolutionDescriptor::ConvolutionDescriptor() {
  COHORT_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&m_desc));
}
ConvolutionDescriptor::~ConvolutionDescriptor() {
  if (m_desc) COHORT_CUDNN_CHECK_PRINT(cudnnDestroyConvolutionDescriptor(m_desc));
}
void ConvolutionDescriptor::set_2d(int pad_h, int pad_w, int stride_h, int stride_w, int dilation_h,
                                   int dilation_w) {
  COHORT_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(m_desc, pad_h, pad_w, stride_h, stride_w,
                                                     dilation_h, dilation_w,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
}
void ConvolutionDescriptor::set_math_type(cudnnMathType_t math) {
  COHORT_CUDNN_CHECK(cudnnSetConvolutionMathType(m_desc, math));
}

ActivationDescriptor::ActivationDescriptor() {
  COHORT_CUDNN_CHECK(cudnnCreateActivationDescriptor(&m_desc));
}
ActivationDescriptor::~ActivationDescriptor() {
  if (m_desc) COHORT_CUDNN_CHECK_PRINT(cudnnDestroyActivationDescriptor(m_desc));
}
void ActivationDescriptor::set_relu() {
  COHORT_CUDNN_CHECK(
      cudnnSetActivationDescriptor(m_desc, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
}

PoolingDescriptor::PoolingDescriptor() {
  COHORT_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&m_desc));
}
PoolingDescriptor::~PoolingDescriptor() {
  if (m_desc) COHORT_CUDNN_CHECK_PRINT(cudnnDestroyPoolingDescriptor(m_desc));
}
void PoolingDescriptor::set_2d(cudnnPoolingMode_t mode, bool propagate_nan, int kernel_h,
                               int kernel_w, int pad_h, int pad_w, int stride_h, int stride_w) {
  COHORT_CUDNN_CHECK(cudnnSetPooling2dDescriptor(
      m_desc, mode, propagate_nan ? CUDNN_PROPAGATE_NAN : CUDNN_NOT_PROPAGATE_NAN, kernel_h,
      kernel_w, pad_h, pad_w, stride_h, stride_w));
}

}  // namespace cohort::core::cuda
