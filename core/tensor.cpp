#include "core/tensor.hpp"

#include <fmt/format.h>

#include <cstring>

namespace cohort::core {

#ifdef COHORT_WITH_CUDA
void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
               StreamHandle stream);  // memory_cuda.cpp
void cuda_memset_zero(void* dst, int device, size_t bytes, StreamHandle stream);
void cuda_stream_synchronize(StreamHandle stream);
#endif

namespace {
template <typename T>
void store_as(void* dst, size_t i, double v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    static_cast<T*>(dst)[i] = T(static_cast<float>(v));
  else
    static_cast<T*>(dst)[i] = static_cast<T>(v);
}
template <typename T>
double load_as(const void* src, size_t i) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    return static_cast<double>(static_cast<float>(static_cast<const T*>(src)[i]));
  else
    return static_cast<double>(static_cast<const T*>(src)[i]);
}

template <typename F>
auto dispatch_any(DType t, F&& f) {
  switch (t) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    case DType::f16:
      return f(Half{});
    case DType::bf16:
      return f(BFloat16{});
    case DType::i32:
      return f(int32_t{});
    case DType::i64:
      return f(int64_t{});
    case DType::u8:
      return f(uint8_t{});
  }
  COHORT_FAIL("unknown dtype");
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device, StreamHandle stream) {
  Tensor t;
  t.m_shape = shape;
  t.m_dtype = dtype;
  t.m_storage = allocate_storage(t.nbytes(), device, stream);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device, StreamHandle stream) {
  Tensor t = empty(shape, dtype, device, stream);
  t.zero_(stream);
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  COHORT_CHECK(
      static_cast<int64_t>(values.size()) == shape.numel(),
      fmt::format("from_vector: {} values do not fill shape {}", values.size(), shape.str()));
  Tensor t = empty(shape, dtype);
  dispatch_any(dtype, [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < values.size(); ++i)
      store_as<T>(t.raw(), i, values[i]);
    return 0;
  });
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  return from_vector(std::vector<double>(static_cast<size_t>(shape.numel()), value), shape, dtype);
}

Tensor Tensor::view(const Shape& shape) const {
  COHORT_CHECK(
      shape.numel() == numel(),
      fmt::format("view: cannot view {} as {} (element counts differ)", str(), shape.str()));
  Tensor t = *this;
  t.m_shape = shape;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  COHORT_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= m_shape[0],
               fmt::format("slice [{}, {}) is outside dimension 0 of {}", begin, end, str()));
  Tensor t = *this;
  const int64_t row = rank() > 0 ? numel() / std::max<int64_t>(m_shape[0], 1) : 1;
  t.m_shape[0] = end - begin;
  t.m_offset += static_cast<size_t>(begin * row) * dtype_size(m_dtype);
  return t;
}

Tensor Tensor::flat(int64_t offset, int64_t count) const {
  COHORT_CHECK(offset >= 0 && count >= 0 && offset + count <= numel(),
               fmt::format("flat range [{}, {}) is outside {}", offset, offset + count, str()));
  Tensor t = *this;
  t.m_shape = Shape{count};
  t.m_offset += static_cast<size_t>(offset) * dtype_size(m_dtype);
  return t;
}

void Tensor::copy_from(const Tensor& src, StreamHandle stream) {
  COHORT_CHECK(src.shape() == shape() && src.dtype() == dtype(),
               fmt::format("copy_from: source {} does not match destination {}", src.str(), str()));
  if (nbytes() == 0) return;
  if (device().is_cpu() && src.device().is_cpu()) {
    std::memmove(raw(), src.raw(), nbytes());
    return;
  }
#ifdef COHORT_WITH_CUDA
  cuda_copy(raw(), device(), src.raw(), src.device(), nbytes(), stream);
#else
  COHORT_FAIL("copy_from: CUDA tensor in a build without CUDA");
#endif
}

Tensor Tensor::to(Device target, StreamHandle stream) const {
  Tensor t = empty(m_shape, m_dtype, target, stream);
  t.copy_from(*this, stream);
  return t;
}

Tensor Tensor::clone(StreamHandle stream) const {
  return to(device(), stream);
}

Tensor Tensor::cast_cpu(DType target) const {
  COHORT_CHECK(device().is_cpu(), fmt::format("cast_cpu: {} is not on the CPU", str()));
  Tensor t = empty(m_shape, target);
  const size_t n = static_cast<size_t>(numel());
  dispatch_any(m_dtype, [&](auto stag) {
    using S = decltype(stag);
    dispatch_any(target, [&](auto dtag) {
      using D = decltype(dtag);
      for (size_t i = 0; i < n; ++i)
        store_as<D>(t.raw(), i, load_as<S>(raw(), i));
      return 0;
    });
    return 0;
  });
  return t;
}

void Tensor::zero_(StreamHandle stream) {
  if (nbytes() == 0) return;
  if (device().is_cpu()) {
    std::memset(raw(), 0, nbytes());
    return;
  }
#ifdef COHORT_WITH_CUDA
  cuda_memset_zero(raw(), device().index, nbytes(), stream);
#endif
}

std::vector<double> Tensor::to_vector(StreamHandle stream) const {
  Tensor host = *this;
  if (device().is_cuda()) {
    host = to(Device::cpu(), stream);
#ifdef COHORT_WITH_CUDA
    cuda_stream_synchronize(stream);
#endif
  }
  std::vector<double> out(static_cast<size_t>(numel()));
  dispatch_any(m_dtype, [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < out.size(); ++i)
      out[i] = load_as<T>(host.raw(), i);
    return 0;
  });
  return out;
}

double Tensor::item(StreamHandle stream) const {
  COHORT_CHECK(numel() == 1, fmt::format("item: {} does not hold exactly one element", str()));
  return to_vector(stream)[0];
}

std::string Tensor::str() const {
  return fmt::format("{}{} on {}", dtype_name(m_dtype), m_shape.str(), device().str());
}

void Tensor::check_dtype(DType expected, const char* what) const {
  COHORT_CHECK(m_dtype == expected, fmt::format("{}: expected dtype {}, got tensor {}", what,
                                                dtype_name(expected), str()));
}

}  // namespace cohort::core
