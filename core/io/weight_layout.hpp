#pragma once
// Conversions between PyTorch's convolution weight layouts and cohort's (see ops.hpp):
//   conv2d            PyTorch [O, I, kh, kw]  ->  cohort [O, kh, kw, I]
//   conv_transpose2d  PyTorch [I, O, kh, kw]  ->  cohort [I, kh, kw, O]
// Both move dimension 1 to the end. They work on CPU tensors of any dtype (the
// bytes of each element are moved, never converted) and return new tensors.
#include "core/tensor.hpp"

namespace cohort::core::io {

Tensor convert_conv_weight_oihw_to_ohwi(const Tensor& weight);
Tensor convert_conv_transpose_weight_iohw_to_ihwo(const Tensor& weight);
// And back (export to PyTorch): the last dimension moves to position 1.
Tensor convert_conv_weight_ohwi_to_oihw(const Tensor& weight);
Tensor convert_conv_transpose_weight_ihwo_to_iohw(const Tensor& weight);

}  // namespace cohort::core::io
