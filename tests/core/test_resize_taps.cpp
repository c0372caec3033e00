// The index arithmetic of the deterministic (gathering) resize backward, checked
// on the CPU: the footprint of every source cell against brute force, and the
// gathered gradient against the CPU op's scatter (core/ops/resize_taps.hpp; the
// CUDA kernel calls the same functions).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>
#include <vector>

#include "core/ops/ops.hpp"
#include "core/ops/resize_taps.hpp"
#include "tests/support/gradcheck.hpp"

namespace cohort {
namespace {

using core::ops::resize_footprint;
using core::ops::resize_taps;
using core::ops::resize_weight_of;

TEST(ResizeTaps, FootprintHoldsExactlyTheOutputCellsThatReadEachSource) {
  std::vector<std::pair<int64_t, int64_t>> sizes;
  for (int64_t in = 1; in <= 24; ++in)
    for (int64_t out = 1; out <= 24; ++out)
      sizes.emplace_back(in, out);
  for (auto pair : {std::pair<int64_t, int64_t>{33, 512},
                    {512, 33},
                    {128, 1024},
                    {65, 129},
                    {1024, 128},
                    {97, 1000}})
    sizes.push_back(pair);
  for (const auto& [in, out] : sizes) {
    for (int64_t src = 0; src < in; ++src) {
      int64_t first = 0, last = -1;
      resize_footprint(src, in, out, first, last);
      for (int64_t dst = 0; dst < out; ++dst) {
        const core::ops::ResizeTaps t = resize_taps(dst, in, out);
        const bool reads = (t.i0 == src && t.w0 != 0) || (t.i1 == src && t.w1 != 0);
        if (reads)
          ASSERT_TRUE(dst >= first && dst <= last)
              << in << " -> " << out << ": output " << dst << " reads source " << src
              << " but the footprint is [" << first << ", " << last << "]";
        if (dst >= first && dst <= last)
          ASSERT_TRUE(t.i0 == src || t.i0 == src - 1)
              << in << " -> " << out << ": output " << dst << " (taps " << t.i0 << ", " << t.i1
              << ") is in source " << src << "'s footprint";
      }
    }
  }
}

TEST(ResizeTaps, GatheredGradientEqualsTheCpuScatter) {
  core::Context ctx;
  for (const auto& [h, w, oh, ow] : std::vector<std::array<int64_t, 4>>{{8, 8, 64, 64},
                                                                        {5, 4, 11, 9},
                                                                        {16, 2, 5, 4},
                                                                        {9, 13, 4, 3},
                                                                        {1, 1, 7, 5},
                                                                        {6, 7, 6, 7}}) {
    SCOPED_TRACE(::testing::Message() << h << "x" << w << " <- " << oh << "x" << ow);
    const int64_t n = 2, c = 3;
    const core::Tensor dy =
        testing::random_tensor(core::Shape{n, oh, ow, c}, 7, -1, 1, core::DType::f32);
    const std::vector<double> expected =
        core::ops::resize_bilinear_backward(ctx, dy, core::Shape{n, h, w, c}).to_vector();
    const std::vector<double> g = dy.to_vector();
    double worst = 0, scale = 0;
    for (int64_t img = 0; img < n; ++img)
      for (int64_t row = 0; row < h; ++row)
        for (int64_t col = 0; col < w; ++col)
          for (int64_t ch = 0; ch < c; ++ch) {
            const auto at = [&](int64_t oy, int64_t ox) {
              return static_cast<float>(
                  g[static_cast<size_t>(((img * oh + oy) * ow + ox) * c + ch)]);
            };
            const double got = core::ops::resize_gather_gradient(row, col, h, w, oh, ow, at);
            const double want = expected[static_cast<size_t>(((img * h + row) * w + col) * c + ch)];
            worst = std::max(worst, std::abs(got - want));
            scale = std::max(scale, std::abs(want));
          }
    EXPECT_LE(worst, 1e-5 * std::max(scale, 1.0)) << "largest difference " << worst;
  }
}

}  // namespace
}  // namespace cohort
