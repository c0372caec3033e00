#pragma once
// RAII wrappers for the cuDNN descriptors the CUDA backend uses. Each owns one
// descriptor, is move-only, and is configured for NHWC activations and
// [O, kh, kw, I] filters (cuDNN's NHWC filter format).
#include <cudnn.h>

#include "core/dtype.hpp"

namespace cohort::core::cuda {

// cuDNN's data type for a tensor dtype; throws for dtypes cuDNN cannot take here.
cudnnDataType_t cudnn_data_type(DType dtype, const char* op);

// Whether cuDNN refused a configuration (a generic bad parameter, or a problem
// it does not support: shape, data type, layout, padding, ...; reported before
// anything runs), so that the caller may route it to the own kernels. Specific
// bad-parameter codes (null or misaligned pointer, insufficient size, stream
// mismatch) are our bugs and driver/architecture mismatches the installation's:
// those never count as declined.
bool cudnn_declined(cudnnStatus_t status);
// COHORT_CUDNN_VERBOSE=1 (read once): print cuDNN's choices and refusals.
bool cudnn_verbose();

class TensorDescriptor {
 public:
  TensorDescriptor();
  ~TensorDescriptor();
  TensorDescriptor(TensorDescriptor&& o) noexcept : m_desc(o.m_desc) { o.m_desc = nullptr; }
  TensorDescriptor& operator=(TensorDescriptor&&) = delete;
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;

  // An NHWC tensor [n, h, w, c].
  void set_nhwc(cudnnDataType_t type, int n, int h, int w, int c);
  // The per-channel descriptor batch normalisation derives from x's (scale, bias,
  // statistics: f32 [1, C, 1, 1] for every floating x). Returns cuDNN's status:
  // a data type it refuses here is a configuration to decline, not an error.
  cudnnStatus_t derive_batch_norm(const TensorDescriptor& x, cudnnBatchNormMode_t mode);
  cudnnTensorDescriptor_t get() const { return m_desc; }

 private:
  cudnnTensorDescriptor_t m_desc = nullptr;
};

class FilterDescriptor {
 public:
  FilterDescriptor();
  ~FilterDescriptor();
  FilterDescriptor(FilterDescriptor&& o) noexcept : m_desc(o.m_desc) { o.m_desc = nullptr; }
  FilterDescriptor& operator=(FilterDescriptor&&) = delete;
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;

  // A filter stored [o, kh, kw, i] (CUDNN_TENSOR_NHWC filter format).
  void set_ohwi(cudnnDataType_t type, int o, int kh, int kw, int i);
  cudnnFilterDescriptor_t get() const { return m_desc; }

 private:
  cudnnFilterDescriptor_t m_desc = nullptr;
};

class ConvolutionDescriptor {
 public:
  ConvolutionDescriptor();
  ~ConvolutionDescriptor();
  ConvolutionDescriptor(ConvolutionDescriptor&& o) noexcept : m_desc(o.m_desc) {
    o.m_desc = nullptr;
  }
  ConvolutionDescriptor& operator=(ConvolutionDescriptor&&) = delete;
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;

  // Cross-correlation (what deep-learning frameworks call convolution) with f32
  // accumulation whatever the storage type.
  void set_2d(int pad_h, int pad_w, int stride_h, int stride_w, int dilation_h, int dilation_w);
  void set_math_type(cudnnMathType_t math);
  cudnnConvolutionDescriptor_t get() const { return m_desc; }

 private:
  cudnnConvolutionDescriptor_t m_desc = nullptr;
};

class ActivationDescriptor {
 public:
  ActivationDescriptor();
  ~ActivationDescriptor();
  ActivationDescriptor(const ActivationDescriptor&) = delete;
  ActivationDescriptor& operator=(const ActivationDescriptor&) = delete;

  // max(x, 0) with NaN propagated (a NaN must stay visible, as on the CPU).
  void set_relu();
  cudnnActivationDescriptor_t get() const { return m_desc; }

 private:
  cudnnActivationDescriptor_t m_desc = nullptr;
};

class PoolingDescriptor {
 public:
  PoolingDescriptor();
  ~PoolingDescriptor();
  PoolingDescriptor(const PoolingDescriptor&) = delete;
  PoolingDescriptor& operator=(const PoolingDescriptor&) = delete;

  // propagate_nan: a NaN in a max window wins (PyTorch's max pooling).
  void set_2d(cudnnPoolingMode_t mode, bool propagate_nan, int kernel_h, int kernel_w, int pad_h,
              int pad_w, int stride_h, int stride_w);
  cudnnPoolingDescriptor_t get() const { return m_desc; }

 private:
  cudnnPoolingDescriptor_t m_desc = nullptr;
};

}  // namespace cohort::core::cuda
