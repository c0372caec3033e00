#pragma once
// Bilinear resize (align_corners=false) index arithmetic shared by the CUDA
// kernels and the CPU tests: which two source cells an output cell reads, and
// the other way round, which output cells read a given source cell. The second
// lets the backward gather each input gradient in a fixed order (no atomics),
// which run.deterministic uses (core/determinism.hpp).
#include <cstdint>

#include "core/host_device.hpp"

namespace cohort::core::ops {

struct ResizeTaps {
  int64_t i0, i1;
  float w0, w1;
};

// PyTorch's mapping: src = max((dst + 0.5) * in/out - 0.5, 0); the right tap
// collapses onto the left one at the border. In double, as the CPU op computes it
// (nvcc may fuse the multiply-add: at a source coordinate that is exactly an
// integer the GPU can then pick the neighbouring tap with a weight of ~0 or ~1,
// the same value to within rounding).
COHORT_HOST_DEVICE inline ResizeTaps resize_taps(int64_t dst, int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  double src = (static_cast<double>(dst) + 0.5) * scale - 0.5;
  if (src < 0) src = 0;
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > in - 1) i0 = in - 1;
  double frac = src - static_cast<double>(i0);
  frac = frac < 0 ? 0 : (frac > 1 ? 1 : frac);
  return {i0, i0 < in - 1 ? i0 + 1 : i0, static_cast<float>(1.0 - frac), static_cast<float>(frac)};
}

// The weight with which output cell taps `t` reads source cell `src` (both taps
// when they collapse onto it at the border; 0 when it reads neither).
COHORT_HOST_DEVICE inline float resize_weight_of(const ResizeTaps& t, int64_t src) {
  return (t.i0 == src ? t.w0 : 0.0f) + (t.i1 == src ? t.w1 : 0.0f);
}

// The output cells [first, last] whose taps may include source cell `src`: every
// dst with i0(dst) in {src - 1, src} (i0 never decreases with dst, so they are
// contiguous). Cells in the range that read `src` with weight 0 add nothing.
// Empty (first > last) when no output cell reads it (downsampling).
COHORT_HOST_DEVICE inline void resize_footprint(int64_t src, int64_t in, int64_t out,
                                                int64_t& first, int64_t& last) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  // Estimates from inverting the mapping, then corrected against resize_taps
  // itself, so rounding in the estimate cannot drop or add a cell.
  first = static_cast<int64_t>((static_cast<double>(src) - 0.5) / scale - 0.5);
  first = first < 0 ? 0 : (first > out - 1 ? out - 1 : first);
  while (first > 0 && resize_taps(first - 1, in, out).i0 >= src - 1)
    --first;
  while (first < out && resize_taps(first, in, out).i0 < src - 1)
    ++first;
  last = static_cast<int64_t>((static_cast<double>(src) + 1.5) / scale + 0.5);
  last = last < 0 ? 0 : (last > out - 1 ? out - 1 : last);
  while (last < out - 1 && resize_taps(last + 1, in, out).i0 <= src)
    ++last;
  while (last >= 0 && resize_taps(last, in, out).i0 > src)
    --last;
}

// d loss / d x[row, col] of one channel: the output gradients that read it,
// weighted, summed rows then columns in increasing order. dy(oy, ox) returns
// the output gradient as float.
template <typename Dy>
COHORT_HOST_DEVICE inline float resize_gather_gradient(int64_t row, int64_t col, int64_t h,
                                                       int64_t w, int64_t oh, int64_t ow,
                                                       const Dy& dy) {
  int64_t r0 = 0, r1 = -1, c0 = 0, c1 = -1;
  resize_footprint(row, h, oh, r0, r1);
  resize_footprint(col, w, ow, c0, c1);
  float sum = 0;
  for (int64_t oy = r0; oy <= r1; ++oy) {
    const float wr = resize_weight_of(resize_taps(oy, h, oh), row);
    if (wr == 0) continue;
    for (int64_t ox = c0; ox <= c1; ++ox) {
      const ResizeTaps k = resize_taps(ox, w, ow);
      const float wc = resize_weight_of(k, col);
      if (wc != 0) sum += wr * wc * dy(oy, ox);
    }
  }
  return sum;
}

}  // namespace cohort::core::ops
