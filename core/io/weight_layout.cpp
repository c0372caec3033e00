#include "core/io/weight_layout.hpp"

#include <fmt/format.h>

#include <cstring>

namespace cohort::core::io {
namespace {

// [A, B, H, W] -> [A, H, W, B], element by element as raw bytes.
Tensor move_dim1_last(const Tensor& w, const char* what, const char* from) {
  COHORT_CHECK(w.defined() && w.rank() == 4,
               fmt::format("{}: expects a rank-4 {} weight, got {}", what, from,
                           w.defined() ? w.str() : std::string("an undefined tensor")));
  COHORT_CHECK(
      w.device().is_cpu(),
      fmt::format("{}: weight {} must be on the CPU (convert before uploading)", what, w.str()));
  const int64_t a = w.dim(0), b = w.dim(1), h = w.dim(2), wd = w.dim(3);
  Tensor out = Tensor::empty(Shape{a, h, wd, b}, w.dtype());
  const size_t elem = dtype_size(w.dtype());
  const auto* src = static_cast<const unsigned char*>(w.raw());
  auto* dst = static_cast<unsigned char*>(out.raw());
  for (int64_t ia = 0; ia < a; ++ia)
    for (int64_t ib = 0; ib < b; ++ib)
      for (int64_t ih = 0; ih < h; ++ih)
        for (int64_t iw = 0; iw < wd; ++iw) {
          const int64_t s = ((ia * b + ib) * h + ih) * wd + iw;
          const int64_t d = ((ia * h + ih) * wd + iw) * b + ib;
          std::memcpy(dst + static_cast<size_t>(d) * elem, src + static_cast<size_t>(s) * elem,
                      elem);
        }
  return out;
}

}  // namespace

Tensor convert_conv_weight_oihw_to_ohwi(const Tensor& weight) {
  return move_dim1_last(weight, "convert_conv_weight_oihw_to_ohwi", "[O, I, kh, kw]");
}

Tensor convert_conv_transpose_weight_iohw_to_ihwo(const Tensor& weight) {
  return move_dim1_last(weight, "convert_conv_transpose_weight_iohw_to_ihwo", "[I, O, kh, kw]");
}

}  // namespace cohort::core::io
