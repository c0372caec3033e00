#include "core/ops/cpu/concat_cpu.hpp"

#include <cstring>

namespace cohort::core::ops::cpu {
namespace {

// Row r of a [rows, c] part occupies bytes [r * total + offset, + c) of the
// [rows, total] whole (all in bytes); `to_whole` picks the copy direction.
void copy_columns(char* whole, int64_t total_bytes, int64_t offset_bytes, char* part,
                  int64_t part_bytes, int64_t rows, bool to_whole) {
  for (int64_t r = 0; r < rows; ++r) {
    char* w = whole + r * total_bytes + offset_bytes;
    char* p = part + r * part_bytes;
    if (to_whole)
      std::memcpy(w, p, static_cast<size_t>(part_bytes));
    else
      std::memcpy(p, w, static_cast<size_t>(part_bytes));
  }
}

int64_t leading_rows(const Tensor& t) {
  const int64_t c = t.dim(-1);
  return c == 0 ? 0 : t.numel() / c;
}

}  // namespace

Tensor concat_channels(Context& ctx, const std::vector<Tensor>& xs) {
  Shape shape = xs.front().shape();
  int64_t total = 0;
  for (const Tensor& x : xs)
    total += x.dim(-1);
  shape[shape.rank() - 1] = total;
  Tensor y = Tensor::empty(shape, xs.front().dtype(), ctx.device(), ctx.stream());
  const int64_t elem = static_cast<int64_t>(dtype_size(y.dtype()));
  const int64_t rows = leading_rows(xs.front());
  int64_t offset = 0;
  for (const Tensor& x : xs) {
    copy_columns(static_cast<char*>(y.raw()), total * elem, offset * elem,
                 static_cast<char*>(x.raw()), x.dim(-1) * elem, rows, true);
    offset += x.dim(-1);
  }
  return y;
}

std::vector<Tensor> split_channels(Context& ctx, const Tensor& dy,
                                   const std::vector<int64_t>& channels) {
  const int64_t elem = static_cast<int64_t>(dtype_size(dy.dtype()));
  const int64_t total = dy.dim(-1);
  const int64_t rows = leading_rows(dy);
  std::vector<Tensor> parts;
  parts.reserve(channels.size());
  int64_t offset = 0;
  for (int64_t c : channels) {
    Shape shape = dy.shape();
    shape[shape.rank() - 1] = c;
    Tensor part = Tensor::empty(shape, dy.dtype(), ctx.device(), ctx.stream());
    copy_columns(static_cast<char*>(dy.raw()), total * elem, offset * elem,
                 static_cast<char*>(part.raw()), c * elem, rows, false);
    parts.push_back(std::move(part));
    offset += c;
  }
  return parts;
}

}  // namespace cohort::core::ops::cpu
