#pragma once
// Resizing 8-bit images for converters (ImageFolder's shorter-side resize).
#include <cstdint>

#include "data/image_codec.hpp"

namespace cohort::data {

// Separable triangle ("bilinear") filter whose support widens with the reduction
// factor, so downscaling averages every source pixel instead of aliasing (PIL's
// BILINEAR resampling works the same way). Pixel centres are aligned
// (align_corners = false).
Image8 resize_image(const Image8& image, int64_t height, int64_t width);

// The (height, width) that makes the shorter side `shorter` and keeps the aspect
// ratio (the longer side rounded to the nearest pixel, at least 1).
void shorter_side_size(int64_t height, int64_t width, int64_t shorter, int64_t& out_height,
                       int64_t& out_width);

}  // namespace cohort::data
