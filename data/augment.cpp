#include "data/augment.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/error.hpp"
#include "data/image_resize.hpp"

namespace cohort::data {
namespace {

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// splitmix64 seeded from (seed, epoch, index) by chained mixing: a fully specified
// generator (std:: distributions are not), so plans agree across platforms.
class PlanRng {
 public:
  PlanRng(uint64_t seed, int64_t epoch, int64_t index)
      : m_state(mix64(mix64(mix64(seed ^ 0x6a09e667f3bcc909ull) ^ static_cast<uint64_t>(epoch)) ^
                      static_cast<uint64_t>(index))) {}
  uint64_t next() { return mix64(m_state++); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n] (Lemire's multiply-and-reject).
  int64_t integer(int64_t n) {
    const uint64_t range = static_cast<uint64_t>(n) + 1;
    const uint64_t threshold = (0 - range) % range;
    for (;;) {
      const unsigned __int128 m = static_cast<unsigned __int128>(next()) * range;
      if (static_cast<uint64_t>(m) >= threshold) return static_cast<int64_t>(m >> 64);
    }
  }
  bool coin() { return (next() >> 63) != 0; }

 private:
  uint64_t m_state;
};

int64_t floor_half(int64_t v) {  // floor(v / 2) for negative v too
  return v >= 0 ? v / 2 : -((-v + 1) / 2);
}

// An axis that shows a source of `scaled` pixels (the source resampled by
// src_len / scaled) from offset `offset` (negative: padding before it).
AxisPlan scaled_axis(int64_t out, int64_t src_len, int64_t scaled, int64_t offset) {
  AxisPlan a;
  a.size = out;
  a.step = static_cast<double>(src_len) / static_cast<double>(scaled);
  a.origin = static_cast<double>(offset) * a.step;
  a.valid_begin = std::clamp<int64_t>(-offset, 0, out);
  a.valid_end = std::clamp<int64_t>(scaled - offset, a.valid_begin, out);
  return a;
}

// A window [first, first + len) of the source stretched over `out` pixels.
AxisPlan window_axis(int64_t out, double first, double len) {
  AxisPlan a;
  a.size = out;
  a.step = len / static_cast<double>(out);
  a.origin = first;
  a.valid_begin = 0;
  a.valid_end = out;
  return a;
}

// Random offset of an `out`-long crop over `scaled` pixels: inside when it fits,
// otherwise the scaled image lands at a random place inside the crop.
int64_t random_offset(PlanRng& rng, int64_t scaled, int64_t out) {
  return scaled >= out ? rng.integer(scaled - out) : -rng.integer(out - scaled);
}

void random_resized_crop(const AugmentOptions& o, int64_t H, int64_t W, PlanRng& rng, int64_t& top,
                         int64_t& left, int64_t& h, int64_t& w) {
  const double area = static_cast<double>(H) * static_cast<double>(W);
  const double log_lo = std::log(o.min_ratio), log_hi = std::log(o.max_ratio);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(o.min_area, o.max_area);
    const double ratio = std::exp(rng.uniform(log_lo, log_hi));
    w = std::llround(std::sqrt(target * ratio));
    h = std::llround(std::sqrt(target / ratio));
    if (w > 0 && w <= W && h > 0 && h <= H) {
      top = rng.integer(H - h);
      left = rng.integer(W - w);
      return;
    }
  }
  const double in_ratio = static_cast<double>(W) / static_cast<double>(H);
  if (in_ratio < o.min_ratio) {
    w = W;
    h = std::clamp<int64_t>(std::llround(static_cast<double>(w) / o.min_ratio), 1, H);
  } else if (in_ratio > o.max_ratio) {
    h = H;
    w = std::clamp<int64_t>(std::llround(static_cast<double>(h) * o.max_ratio), 1, W);
  } else {
    w = W;
    h = H;
  }
  top = (H - h) / 2;
  left = (W - w) / 2;
}

// Per output position of one axis: bilinear taps (i0, i1, weight of i1) and the
// nearest source index, flip folded in; [lo, hi) is the non-padding range.
struct AxisTable {
  std::vector<int32_t> i0, i1, nearest;
  std::vector<float> w;
  int64_t lo = 0, hi = 0;
};

AxisTable make_table(const AxisPlan& a, int64_t src_len, bool flip) {
  AxisTable t;
  const size_t n = static_cast<size_t>(a.size);
  t.i0.resize(n);
  t.i1.resize(n);
  t.nearest.resize(n);
  t.w.resize(n);
  const int64_t last = src_len - 1;
  for (int64_t o = 0; o < a.size; ++o) {
    const int64_t p = flip ? a.size - 1 - o : o;
    const double centre = a.origin + (static_cast<double>(p) + 0.5) * a.step;
    const double coord = centre - 0.5;
    const double f = std::floor(coord);
    const int64_t fi = static_cast<int64_t>(f);
    t.i0[o] = static_cast<int32_t>(std::clamp<int64_t>(fi, 0, last));
    t.i1[o] = static_cast<int32_t>(std::clamp<int64_t>(fi + 1, 0, last));
    t.w[o] = static_cast<float>(coord - f);
    t.nearest[o] = static_cast<int32_t>(
        std::clamp<int64_t>(static_cast<int64_t>(std::floor(centre)), 0, last));
  }
  t.lo = flip ? a.size - a.valid_end : a.valid_begin;
  t.hi = flip ? a.size - a.valid_begin : a.valid_end;
  return t;
}

// The source positions [first, last + 1) the bilinear taps of `t`'s non-padding
// outputs read; empty when every output is padding.
std::pair<int64_t, int64_t> tap_range(const AxisTable& t) {
  int64_t first = std::numeric_limits<int64_t>::max(), last = -1;
  for (int64_t o = t.lo; o < t.hi; ++o) {
    first = std::min<int64_t>(first, std::min(t.i0[o], t.i1[o]));
    last = std::max<int64_t>(last, std::max(t.i0[o], t.i1[o]));
  }
  return last < 0 ? std::pair<int64_t, int64_t>{0, 0}
                  : std::pair<int64_t, int64_t>{first, last + 1};
}

// Colour jitter + normalisation as one affine map of the sampled 0..255 values:
// out_c = clamp(sum_k m[c][k] v_k + t, 0, 1) * scale_c + shift_c (no clamp without jitter).
struct ColorMap {
  std::array<float, 9> m{};
  float t = 0;
  std::array<float, 3> scale{}, shift{};
};

ColorMap make_color_map(const SamplePlan& plan, const DatasetSpec& spec, int C) {
  ColorMap cm;
  for (int c = 0; c < C; ++c) {
    cm.scale[c] = 1.0f / spec.std[c];
    cm.shift[c] = -spec.mean[c] / spec.std[c];
  }
  constexpr std::array<double, 3> grey{0.299, 0.587, 0.114};
  const double b = plan.brightness, k = plan.contrast, s = plan.saturation;
  const double mean_grey =
      C == 3 ? grey[0] * spec.mean[0] + grey[1] * spec.mean[1] + grey[2] * spec.mean[2]
             : spec.mean[0];
  const double kb = k * b / 255.0;
  cm.t = static_cast<float>((1.0 - k) * b * mean_grey);
  if (C == 3) {
    // saturation: s * I + (1 - s) * 1 grey^T (its rows sum to 1, so it leaves the
    // contrast pivot's grey alone)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c)
        cm.m[r * 3 + c] = static_cast<float>(kb * ((r == c ? s : 0.0) + (1.0 - s) * grey[c]));
  } else {
    cm.m[0] = static_cast<float>(kb);
  }
  return cm;
}

template <typename Out>
inline void store(Out* p, float v) {
  if constexpr (std::is_same_v<Out, float>) {
    *p = v;
  } else {
    p->bits = core::BFloat16::from_float(v);
  }
}

// Separable bilinear resampling with a two-row cache. A source row is interpolated
// horizontally once (into `cols` floats), with the colour map applied there: the map
// is affine and bilinear weights sum to 1, so mapping before the vertical blend gives
// the same values as mapping after it, and an upscaled row is mapped once, not once
// per output row that uses it. The vertical blend, clamp and normalisation then run
// over contiguous floats (vectorised by the compiler).
template <int C, bool kJitter>
class RowResampler {
 public:
  RowResampler(const Image8& src, const AxisTable& tx, const ColorMap& cm)
      : m_src(src), m_tx(tx), m_cm(cm), m_width(static_cast<int64_t>(tx.i0.size())) {
    const size_t n = static_cast<size_t>(m_width * C);
    m_a.resize(static_cast<size_t>(m_width));
    m_b.resize(static_cast<size_t>(m_width));
    for (int64_t x = 0; x < m_width; ++x) {
      m_a[x] = tx.i0[x] * C;
      m_b[x] = tx.i1[x] * C;
    }
    for (int c = 0; c < C; ++c) {
      m_lin_scale[c] = cm.scale[c] / 255.0f;
      m_lin_shift[c] = cm.shift[c];
    }
    for (auto& buffer : m_buffer)
      buffer.assign(n, 0.0f);
  }

  // Row `row` of the source, interpolated and colour-mapped; `keep` is the other row
  // the caller needs now (its cache entry is not evicted).
  const float* row(int32_t row, int32_t keep) {
    for (int i = 0; i < 2; ++i)
      if (m_row[i] == row) return m_buffer[i].data();
    const int victim = m_row[0] == keep ? 1 : 0;
    m_row[victim] = row;
    float* out = m_buffer[victim].data();
    const uint8_t* src = m_src.pixels.data() + static_cast<int64_t>(row) * m_src.width * C;
    for (int64_t x = m_tx.lo; x < m_tx.hi; ++x) {
      const float w = m_tx.w[x];
      const uint8_t *p = src + m_a[x], *q = src + m_b[x];
      float h[C];
      for (int c = 0; c < C; ++c)
        h[c] = p[c] + (static_cast<float>(q[c]) - p[c]) * w;
      float* o = out + x * C;
      if constexpr (kJitter) {
        for (int c = 0; c < C; ++c) {
          float z = m_cm.t;
          for (int k = 0; k < C; ++k)
            z += m_cm.m[c * 3 + k] * h[k];
          o[c] = z;
        }
      } else {
        for (int c = 0; c < C; ++c)
          o[c] = h[c] * m_lin_scale[c] + m_lin_shift[c];
      }
    }
    return out;
  }

 private:
  const Image8& m_src;
  const AxisTable& m_tx;
  const ColorMap& m_cm;
  int64_t m_width;
  std::vector<int32_t> m_a, m_b;  // column taps as offsets into a row
  std::array<float, 3> m_lin_scale{}, m_lin_shift{};
  std::array<int32_t, 2> m_row{-1, -1};
  std::array<std::vector<float>, 2> m_buffer;
};

template <typename Out, int C, bool kJitter>
void render_image(const Image8& src, const AxisTable& tx, const AxisTable& ty, const ColorMap& cm,
                  Out* out) {
  const int64_t OW = static_cast<int64_t>(tx.i0.size()), OH = static_cast<int64_t>(ty.i0.size());
  RowResampler<C, kJitter> rows(src, tx, cm);
  // Per element of an output row: the normalisation after the clamp (jitter only).
  std::vector<float> scale(static_cast<size_t>(OW * C)), shift(scale.size());
  for (int64_t i = 0; i < OW * C; ++i) {
    scale[i] = cm.scale[i % C];
    shift[i] = cm.shift[i % C];
  }
  std::vector<float> blended;  // bf16 output: floats first, then one conversion pass
  if constexpr (!std::is_same_v<Out, float>) blended.resize(static_cast<size_t>(OW * C));
  const int64_t begin = tx.lo * C, end = tx.hi * C;
  for (int64_t y = 0; y < OH; ++y) {
    Out* row = out + y * OW * C;
    // Padding is the mean colour: 0 after normalisation (+0.0 is all-zero bits in
    // f32 and bf16).
    if (y < ty.lo || y >= ty.hi) {
      std::memset(static_cast<void*>(row), 0, static_cast<size_t>(OW * C) * sizeof(Out));
      continue;
    }
    std::memset(static_cast<void*>(row), 0, static_cast<size_t>(begin) * sizeof(Out));
    std::memset(static_cast<void*>(row + end), 0, static_cast<size_t>(OW * C - end) * sizeof(Out));
    const float* a = rows.row(ty.i0[y], ty.i1[y]);
    const float* b = rows.row(ty.i1[y], ty.i0[y]);
    const float wy = ty.w[y];
    float* dst;
    if constexpr (std::is_same_v<Out, float>) {
      dst = row;
    } else {
      dst = blended.data();
    }
    if constexpr (kJitter) {
      for (int64_t i = begin; i < end; ++i) {
        const float v = std::min(std::max(a[i] + (b[i] - a[i]) * wy, 0.0f), 1.0f);
        dst[i] = v * scale[i] + shift[i];
      }
    } else {
      for (int64_t i = begin; i < end; ++i)
        dst[i] = a[i] + (b[i] - a[i]) * wy;
    }
    if constexpr (!std::is_same_v<Out, float>)
      for (int64_t i = begin; i < end; ++i)
        store(row + i, dst[i]);
  }
}

template <typename Out>
void render_image_dispatch(const Image8& src, int C, bool jitter, const AxisTable& tx,
                           const AxisTable& ty, const ColorMap& cm, Out* out) {
  if (C == 3) {
    jitter ? render_image<Out, 3, true>(src, tx, ty, cm, out)
           : render_image<Out, 3, false>(src, tx, ty, cm, out);
  } else {
    jitter ? render_image<Out, 1, true>(src, tx, ty, cm, out)
           : render_image<Out, 1, false>(src, tx, ty, cm, out);
  }
}

// Nearest-neighbour resampling of a [H, W] map with `pad` outside the valid window.
template <typename In, typename Out>
void render_nearest(const In* src, int64_t src_width, const AxisTable& tx, const AxisTable& ty,
                    Out pad, Out* out) {
  const int64_t OW = static_cast<int64_t>(tx.i0.size()), OH = static_cast<int64_t>(ty.i0.size());
  for (int64_t y = 0; y < OH; ++y) {
    Out* row = out + y * OW;
    const bool pad_row = y < ty.lo || y >= ty.hi;
    const int64_t lo = pad_row ? OW : tx.lo, hi = pad_row ? OW : tx.hi;
    std::fill(row, row + lo, pad);
    std::fill(row + std::max(hi, lo), row + OW, pad);
    if (pad_row) continue;
    const In* s = src + ty.nearest[y] * src_width;
    for (int64_t x = lo; x < hi; ++x)
      row[x] = static_cast<Out>(s[tx.nearest[x]]);
  }
}

}  // namespace

const char* to_string(EvalCrop crop) {
  return crop == EvalCrop::full ? "full" : "center";
}

AugmentOptions AugmentOptions::dense_train(int64_t height, int64_t width) {
  AugmentOptions o;
  o.height = height;
  o.width = width;
  return o;
}

AugmentOptions AugmentOptions::dense_eval(EvalCrop crop, int64_t height, int64_t width) {
  AugmentOptions o;
  o.train = false;
  o.eval_crop = crop;
  o.height = height;
  o.width = width;
  return o;
}

AugmentOptions AugmentOptions::classification_train(int64_t size) {
  AugmentOptions o;
  o.height = o.width = size;
  o.brightness = o.contrast = o.saturation = 0;
  return o;
}

AugmentOptions AugmentOptions::classification_eval(int64_t size) {
  AugmentOptions o = classification_train(size);
  o.train = false;
  return o;
}

void AugmentOptions::validate() const {
  const bool needs_size = train || eval_crop == EvalCrop::center;
  COHORT_CHECK(
      !needs_size || (height > 0 && width > 0),
      fmt::format("augmentation: output size {}x{} (height x width must be > 0)", height, width));
  COHORT_CHECK(min_scale > 0 && max_scale >= min_scale,
               fmt::format("augmentation: scale range [{}, {}]", min_scale, max_scale));
  COHORT_CHECK(brightness >= 0 && brightness < 1 && contrast >= 0 && contrast < 1 &&
                   saturation >= 0 && saturation <= 1,
               fmt::format("augmentation: jitter brightness {} contrast {} saturation {} (each in "
                           "[0, 1))",
                           brightness, contrast, saturation));
  COHORT_CHECK(
      min_area > 0 && max_area <= 1 && min_area <= max_area,
      fmt::format("augmentation: area range [{}, {}] (within (0, 1])", min_area, max_area));
  COHORT_CHECK(min_ratio > 0 && max_ratio >= min_ratio,
               fmt::format("augmentation: aspect ratio range [{}, {}]", min_ratio, max_ratio));
  COHORT_CHECK(resize_shorter >= 0, fmt::format("augmentation: resize_shorter {}", resize_shorter));
}

void output_size(const AugmentOptions& o, TaskKind kind, int64_t H, int64_t W, int64_t& height,
                 int64_t& width) {
  if (!o.train && kind != TaskKind::classification && o.eval_crop == EvalCrop::full) {
    height = H;
    width = W;
  } else {
    height = o.height;
    width = o.width;
  }
}

SamplePlan plan_sample(const AugmentOptions& o, TaskKind kind, int64_t H, int64_t W, uint64_t seed,
                       int64_t epoch, int64_t index) {
  COHORT_CHECK(H > 0 && W > 0, fmt::format("augmentation: image of {}x{}", H, W));
  int64_t OH = 0, OW = 0;
  output_size(o, kind, H, W, OH, OW);
  SamplePlan p;
  if (kind == TaskKind::classification) {
    if (o.train) {
      PlanRng rng(seed, epoch, index);
      int64_t top = 0, left = 0, h = 0, w = 0;
      random_resized_crop(o, H, W, rng, top, left, h, w);
      p.y = window_axis(OH, static_cast<double>(top), static_cast<double>(h));
      p.x = window_axis(OW, static_cast<double>(left), static_cast<double>(w));
      p.flip = o.flip && rng.coin();
      p.scale = static_cast<double>(OW) / static_cast<double>(w);
    } else {
      const int64_t shorter =
          o.resize_shorter > 0
              ? o.resize_shorter
              : std::max<int64_t>(1, std::llround(static_cast<double>(std::min(OH, OW)) / 0.875));
      int64_t SH = 0, SW = 0;
      shorter_side_size(H, W, shorter, SH, SW);
      p.y = scaled_axis(OH, H, SH, floor_half(SH - OH));
      p.x = scaled_axis(OW, W, SW, floor_half(SW - OW));
      p.scale = static_cast<double>(SW) / static_cast<double>(W);
    }
    return p;
  }
  if (!o.train) {
    // Unscaled: full image (OH == H) or a centre crop, padded when the image is smaller.
    p.y = scaled_axis(OH, H, H, floor_half(H - OH));
    p.x = scaled_axis(OW, W, W, floor_half(W - OW));
    return p;
  }
  // Fixed draw order: scale, row offset, column offset, flip, brightness, contrast,
  // saturation (every draw is made whether or not its option is on).
  PlanRng rng(seed, epoch, index);
  p.scale = rng.uniform(o.min_scale, o.max_scale);
  const int64_t SH = std::max<int64_t>(1, std::llround(static_cast<double>(H) * p.scale));
  const int64_t SW = std::max<int64_t>(1, std::llround(static_cast<double>(W) * p.scale));
  const int64_t top = random_offset(rng, SH, OH);
  const int64_t left = random_offset(rng, SW, OW);
  p.y = scaled_axis(OH, H, SH, top);
  p.x = scaled_axis(OW, W, SW, left);
  p.flip = rng.coin() && o.flip;
  const double b = rng.uniform(-1, 1), c = rng.uniform(-1, 1), s = rng.uniform(-1, 1);
  p.brightness = static_cast<float>(1.0 + o.brightness * b);
  p.contrast = static_cast<float>(1.0 + o.contrast * c);
  p.saturation = static_cast<float>(1.0 + o.saturation * s);
  return p;
}

void render_sample(const Sample& sample, const SamplePlan& plan, const DatasetSpec& spec,
                   const SampleTarget& out) {
  const Image8& img = sample.image;
  const int64_t H = img.height, W = img.width;
  const int C = static_cast<int>(img.channels);
  COHORT_CHECK(
      H > 0 && W > 0 && (C == 1 || C == 3) && img.pixels.size() == img.bytes() &&
          spec.mean.size() == static_cast<size_t>(C) && spec.std.size() == static_cast<size_t>(C),
      fmt::format("augmentation: sample {}: image {}x{}x{} with {} bytes and {} mean / {} "
                  "std values",
                  sample.index, H, W, C, img.pixels.size(), spec.mean.size(), spec.std.size()));
  const size_t pixels = static_cast<size_t>(H * W);
  COHORT_CHECK(!out.label || sample.label.size() == pixels,
               fmt::format("augmentation: sample {} has {} label values for a {}x{} image",
                           sample.index, sample.label.size(), H, W));
  COHORT_CHECK(!(out.depth || out.depth_valid) || sample.depth.size() == pixels,
               fmt::format("augmentation: sample {} has {} depth values for a {}x{} image",
                           sample.index, sample.depth.size(), H, W));
  const AxisTable tx = make_table(plan.x, W, plan.flip);
  const AxisTable ty = make_table(plan.y, H, false);
  if (out.image) {
    const ColorMap cm = make_color_map(plan, spec, C);
    if (out.image_dtype == core::DType::f32) {
      render_image_dispatch(img, C, plan.jitter(), tx, ty, cm, static_cast<float*>(out.image));
    } else {
      COHORT_CHECK(out.image_dtype == core::DType::bf16,
                   fmt::format("augmentation: image dtype {} (f32 or bf16)",
                               core::dtype_name(out.image_dtype)));
      render_image_dispatch(img, C, plan.jitter(), tx, ty, cm,
                            static_cast<core::BFloat16*>(out.image));
    }
  }
  if (out.label) {
    if (out.label_dtype == core::DType::u8) {
      render_nearest<uint8_t, uint8_t>(sample.label.data(), W, tx, ty, kIgnoreLabel,
                                       static_cast<uint8_t*>(out.label));
    } else {
      COHORT_CHECK(out.label_dtype == core::DType::i32,
                   fmt::format("augmentation: label dtype {} (u8 or i32)",
                               core::dtype_name(out.label_dtype)));
      render_nearest<uint8_t, int32_t>(sample.label.data(), W, tx, ty, kIgnoreLabel,
                                       static_cast<int32_t*>(out.label));
    }
  }
  if (out.depth) render_nearest<float, float>(sample.depth.data(), W, tx, ty, 0.0f, out.depth);
  if (out.depth_valid) {
    const int64_t n = plan.x.size * plan.y.size;
    if (out.depth) {
      for (int64_t i = 0; i < n; ++i)
        out.depth_valid[i] = out.depth[i] > 0.0f ? 1 : 0;
    } else {
      std::vector<float> depth(static_cast<size_t>(n));
      render_nearest<float, float>(sample.depth.data(), W, tx, ty, 0.0f, depth.data());
      for (int64_t i = 0; i < n; ++i)
        out.depth_valid[i] = depth[i] > 0.0f ? 1 : 0;
    }
  }
}

ImageWindow source_window(const SamplePlan& plan, int64_t height, int64_t width) {
  // The same tables render_sample builds, so the window is exactly what it reads.
  const auto [r0, r1] = tap_range(make_table(plan.y, height, false));
  const auto [c0, c1] = tap_range(make_table(plan.x, width, plan.flip));
  return {r0, r1, c0, c1};
}

}  // namespace cohort::data
