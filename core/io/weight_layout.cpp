#include "core/io/weight_layout.hpp"

#include <fmt/format.h>

#include <cstring>

namespace cohort::core::io {
namespace {

// to_last: [A, B, H, W] -> [A, H, W, B]; else the inverse, [A, H, W, B] ->
// [A, B, H, W]. Element by element as raw bytes.
Tensor move_dim(const Tensor& w, bool to_last, const char* what, const char* from) {
  COHORT_CHECK(w.defined() && w.rank() == 4,
               fmt::format("{}: expects a rank-4 {} weight, got {}", what, from,
                           w.defined() ? w.str() : std::string("an undefined tensor")));
  COHORT_CHECK(w.device().is_cpu(), fmt::format("{}: weight {} must be on the CPU", what, w.str()));
  const int64_t a = w.dim(0), b = w.dim(to_last ? 1 : 3), h = w.dim(to_last ? 2 : 1),
                wd = w.dim(to_last ? 3 : 2);
  Tensor out = Tensor::empty(to_last ? Shape{a, h, wd, b} : Shape{a, b, h, wd}, w.dtype());
  const size_t elem = dtype_size(w.dtype());
  const auto* src = static_cast<const unsigned char*>(w.raw());
  auto* dst = static_cast<unsigned char*>(out.raw());
  for (int64_t ia = 0; ia < a; ++ia)
    for (int64_t ib = 0; ib < b; ++ib)
      for (int64_t ih = 0; ih < h; ++ih)
        for (int64_t iw = 0; iw < wd; ++iw) {
          const int64_t dim1 = ((ia * b + ib) * h + ih) * wd + iw;  // [A, B, H, W]
          const int64_t last = ((ia * h + ih) * wd + iw) * b + ib;  // [A, H, W, B]
          const int64_t from_index = to_last ? dim1 : last, to_index = to_last ? last : dim1;
          std::memcpy(dst + static_cast<size_t>(to_index) * elem,
                      src + static_cast<size_t>(from_index) * elem, elem);
        }
  return out;
}

}  // namespace

Tensor convert_conv_weight_ohwi_to_oihw(const Tensor& weight) {
  return move_dim(weight, false, "convert_conv_weight_ohwi_to_oihw", "[O, kh, kw, I]");
}

Tensor convert_conv_transpose_weight_ihwo_to_iohw(const Tensor& weight) {
  return move_dim(weight, false, "convert_conv_transpose_weight_ihwo_to_iohw", "[I, kh, kw, O]");
}

Tensor convert_conv_weight_oihw_to_ohwi(const Tensor& weight) {
  return move_dim(weight, true, "convert_conv_weight_oihw_to_ohwi", "[O, I, kh, kw]");
}

Tensor convert_conv_transpose_weight_iohw_to_ihwo(const Tensor& weight) {
  return move_dim(weight, true, "convert_conv_transpose_weight_iohw_to_ihwo", "[I, O, kh, kw]");
}

}  // namespace cohort::core::io
