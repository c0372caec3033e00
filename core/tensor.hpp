#pragma once
// Tensor: a dtype, a device, a shape and a byte offset into shared Storage.
// Tensors are always dense row-major; "views" (view, slice, flat) share storage
// and never copy. Activations are NHWC. Nothing here synchronises a stream
// implicitly: the host-side accessors (to_vector, item) say so in their names.
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/shape.hpp"
#include "core/storage.hpp"

namespace cohort::core {

class Tensor {
 public:
  Tensor() = default;  // undefined tensor

  // Allocates uninitialised memory. For CUDA the allocation is ordered on `stream`.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu(),
                      StreamHandle stream = nullptr);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu(),
                      StreamHandle stream = nullptr);
  // A CPU tensor holding a copy of `values` (converted to `dtype`).
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);

  bool defined() const { return m_storage != nullptr; }
  const Shape& shape() const { return m_shape; }
  int64_t dim(int i) const { return m_shape.dim(i); }
  int rank() const { return m_shape.rank(); }
  DType dtype() const { return m_dtype; }
  Device device() const { return m_storage ? m_storage->device() : Device::cpu(); }
  int64_t numel() const { return m_shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(m_dtype); }
  const std::shared_ptr<Storage>& storage() const { return m_storage; }
  size_t byte_offset() const { return m_offset; }

  void* raw() const { return static_cast<char*>(m_storage->data()) + m_offset; }
  template <typename T>
  T* data() const {
    check_dtype(dtype_of<T>, "data<T>()");
    return static_cast<T*>(raw());
  }

  // Same storage, new shape (same number of elements).
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) along dimension 0.
  Tensor slice(int64_t begin, int64_t end) const;
  // `count` elements starting at element `offset`, as a 1-D tensor.
  Tensor flat(int64_t offset, int64_t count) const;

  // Copies `src` (same shape and dtype; any devices) into this tensor, ordered on `stream`.
  void copy_from(const Tensor& src, StreamHandle stream = nullptr);
  Tensor to(Device device, StreamHandle stream = nullptr) const;
  Tensor clone(StreamHandle stream = nullptr) const;
  // Converts element type (CPU tensors only; CUDA casting is an op).
  Tensor cast_cpu(DType dtype) const;
  void zero_(StreamHandle stream = nullptr);

  // Host copies converted to double. For a CUDA tensor this synchronises `stream`.
  std::vector<double> to_vector(StreamHandle stream = nullptr) const;
  double item(StreamHandle stream = nullptr) const;

  bool shares_storage_with(const Tensor& o) const { return m_storage == o.m_storage; }
  std::string str() const;  // "f32[2, 3] on cpu"

  void check_dtype(DType expected, const char* what) const;

 private:
  std::shared_ptr<Storage> m_storage;
  size_t m_offset = 0;
  Shape m_shape;
  DType m_dtype = DType::f32;
};

}  // namespace cohort::core
