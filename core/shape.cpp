#include "core/shape.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"

namespace cohort::core {

Shape::Shape(std::initializer_list<int64_t> dims)
    : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  COHORT_CHECK(
      dims.size() <= max_rank,
      fmt::format("shape has {} dimensions; at most {} are supported", dims.size(), max_rank));
  for (int64_t d : dims)
    COHORT_CHECK(d >= 0, fmt::format("shape {} has a negative dimension", fmt::join(dims, ", ")));
  m_rank = static_cast<int>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i)
    m_dims[i] = dims[i];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < m_rank; ++i)
    n *= m_dims[static_cast<size_t>(i)];
  return n;
}

std::string Shape::str() const {
  return fmt::format("[{}]", fmt::join(dims(), ", "));
}

bool Shape::operator==(const Shape& o) const {
  if (m_rank != o.m_rank) return false;
  for (int i = 0; i < m_rank; ++i)
    if (m_dims[static_cast<size_t>(i)] != o.m_dims[static_cast<size_t>(i)]) return false;
  return true;
}

}  // namespace cohort::core
