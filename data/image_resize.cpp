#include "data/image_resize.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"

namespace cohort::data {
namespace {

// For each output coordinate: the first source index and normalised weights.
struct Taps {
  std::vector<int64_t> first;
  std::vector<std::vector<float>> weights;
};

Taps make_taps(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = std::max(scale, 1.0);
  Taps taps;
  taps.first.resize(static_cast<size_t>(out));
  taps.weights.resize(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) {
    const double center = (static_cast<double>(i) + 0.5) * scale;
    const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(center - support)));
    const int64_t hi = std::min<int64_t>(in - 1, static_cast<int64_t>(std::ceil(center + support)));
    std::vector<float> w;
    double total = 0;
    for (int64_t j = lo; j <= hi; ++j) {
      const double d = std::abs(static_cast<double>(j) + 0.5 - center) / support;
      const double v = std::max(0.0, 1.0 - d);
      w.push_back(static_cast<float>(v));
      total += v;
    }
    if (total <= 0) {  // cannot happen for in >= 1, but keep a sane fallback
      w.assign(1, 1.0f);
      taps.first[i] = std::clamp<int64_t>(static_cast<int64_t>(center), 0, in - 1);
    } else {
      for (float& v : w)
        v = static_cast<float>(v / total);
      taps.first[i] = lo;
    }
    taps.weights[i] = std::move(w);
  }
  return taps;
}

}  // namespace

void shorter_side_size(int64_t height, int64_t width, int64_t shorter, int64_t& out_height,
                       int64_t& out_width) {
  COHORT_CHECK(height > 0 && width > 0 && shorter > 0,
               fmt::format("resize: image {}x{} to shorter side {}", height, width, shorter));
  if (height <= width) {
    out_height = shorter;
    out_width = std::max<int64_t>(1, std::llround(static_cast<double>(width) * shorter / height));
  } else {
    out_width = shorter;
    out_height = std::max<int64_t>(1, std::llround(static_cast<double>(height) * shorter / width));
  }
}

Image8 resize_image(const Image8& image, int64_t height, int64_t width) {
  COHORT_CHECK(height > 0 && width > 0 && image.height > 0 && image.width > 0 &&
                   image.pixels.size() == image.bytes(),
               fmt::format("resize: {}x{}x{} image to {}x{}", image.height, image.width,
                           image.channels, height, width));
  if (height == image.height && width == image.width) return image;
  const int64_t C = image.channels;
  const Taps tx = make_taps(image.width, width), ty = make_taps(image.height, height);
  // Horizontal pass into floats [in_h, width, C], then vertical into bytes.
  std::vector<float> mid(static_cast<size_t>(image.height * width * C));
  for (int64_t y = 0; y < image.height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int64_t c = 0; c < C; ++c) {
        float acc = 0;
        const auto& w = tx.weights[x];
        for (size_t k = 0; k < w.size(); ++k)
          acc += w[k] * image.pixels[((y * image.width) + tx.first[x] + int64_t(k)) * C + c];
        mid[(y * width + x) * C + c] = acc;
      }
  Image8 out{height, width, C, std::vector<uint8_t>(static_cast<size_t>(height * width * C))};
  for (int64_t y = 0; y < height; ++y) {
    const auto& w = ty.weights[y];
    for (int64_t x = 0; x < width; ++x)
      for (int64_t c = 0; c < C; ++c) {
        float acc = 0;
        for (size_t k = 0; k < w.size(); ++k)
          acc += w[k] * mid[((ty.first[y] + int64_t(k)) * width + x) * C + c];
        out.pixels[(y * width + x) * C + c] =
            static_cast<uint8_t>(std::clamp(std::lround(acc), 0L, 255L));
      }
  }
  return out;
}

}  // namespace cohort::data
