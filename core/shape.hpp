#pragma once
// A tensor shape: up to 8 dimensions, stored inline (no allocation on hot paths).
// Activations are NHWC: shape {N, H, W, C}.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

namespace cohort::core {

class Shape {
 public:
  static constexpr int max_rank = 8;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);

  int rank() const { return m_rank; }
  int64_t operator[](int i) const { return m_dims[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return m_dims[static_cast<size_t>(i)]; }
  // Negative indices count from the back, as in Python.
  int64_t dim(int i) const { return m_dims[static_cast<size_t>(i < 0 ? i + m_rank : i)]; }
  int64_t numel() const;
  std::span<const int64_t> dims() const { return {m_dims.data(), static_cast<size_t>(m_rank)}; }
  std::string str() const;  // "[2, 3, 4]"

  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  std::array<int64_t, max_rank> m_dims{};
  int m_rank = 0;
};

}  // namespace cohort::core
