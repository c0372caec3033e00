#include "data/synthetic_scenes.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace cohort::data {
namespace {

// Cityscapes train ids used by the generator.
enum TrainId : uint8_t {
  kRoad = 0,
  kSidewalk = 1,
  kBuilding = 2,
  kPole = 5,
  kTrafficLight = 6,
  kTrafficSign = 7,
  kVegetation = 8,
  kTerrain = 9,
  kSky = 10,
  kPerson = 11,
  kCar = 13,
};

struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int below(int n) { return static_cast<int>(uniform() * n); }
};

struct Rgb {
  double r, g, b;
};

// Deterministic per-pixel noise in [-1, 1].
double pixel_noise(uint64_t salt, int64_t x, int64_t y) {
  uint64_t h = salt ^ (static_cast<uint64_t>(x) * 0x9e3779b97f4a7c15ull) ^
               (static_cast<uint64_t>(y) * 0xc2b2ae3d27d4eb4full);
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return static_cast<double>(h & 0xffff) / 32767.5 - 1.0;
}

class Canvas {
 public:
  Canvas(int64_t width, int64_t height, uint64_t salt)
      : W(width),
        H(height),
        m_salt(salt),
        zbuf(static_cast<size_t>(width * height), std::numeric_limits<float>::infinity()) {
    scene.image =
        Image8{height, width, 3, std::vector<uint8_t>(static_cast<size_t>(width * height * 3))};
    scene.label.assign(static_cast<size_t>(width * height), kSky);
    scene.depth.assign(static_cast<size_t>(width * height), 0.0f);
  }

  // Writes one pixel if it is nearer than what is there (z-buffer); `depth` <= 0
  // is sky (always farthest, stored as invalid depth 0).
  void put(int64_t x, int64_t y, uint8_t cls, Rgb color, double depth, double noise = 6.0) {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    const size_t i = static_cast<size_t>(y * W + x);
    const float z = depth > 0 ? static_cast<float>(depth) : std::numeric_limits<float>::max();
    if (z > zbuf[i]) return;
    zbuf[i] = z;
    scene.label[i] = cls;
    scene.depth[i] = depth > 0 ? static_cast<float>(depth) : 0.0f;
    // Haze towards a pale grey with distance, then per-pixel noise.
    const double haze = depth > 0 ? 1.0 - std::exp(-depth / 350.0) : 0.0;
    const double n = noise * pixel_noise(m_salt, x, y);
    const double rgb[3] = {color.r, color.g, color.b};
    for (int c = 0; c < 3; ++c) {
      const double v = rgb[c] * (1 - haze) + 190.0 * haze + n;
      scene.image.pixels[i * 3 + c] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
    }
  }

  const int64_t W, H;
  SyntheticScene scene;

 private:
  uint64_t m_salt;
  std::vector<float> zbuf;
};

Rgb jitter(Rng& rng, Rgb c, double amount) {
  return Rgb{c.r + rng.uniform(-amount, amount), c.g + rng.uniform(-amount, amount),
             c.b + rng.uniform(-amount, amount)};
}

Rgb scale(Rgb c, double s) {
  return Rgb{c.r * s, c.g * s, c.b * s};
}

struct Camera {
  double f, hc, yh, xv;
  // Image position of the point (X lateral, Y up, Z forward), metres.
  double px(double X, double Z) const { return xv + f * X / Z; }
  double py(double Y, double Z) const { return yh + f * (hc - Y) / Z; }
};

// An upright rectangle facing the camera: lateral [x0, x1], height [y0, y1], depth Z.
template <typename Shade>
void draw_upright(Canvas& cv, const Camera& cam, double X0, double X1, double Y0, double Y1,
                  double Z, uint8_t cls, Shade shade) {
  const int64_t left = static_cast<int64_t>(std::floor(cam.px(X0, Z)));
  const int64_t right = static_cast<int64_t>(std::ceil(cam.px(X1, Z)));
  const int64_t top = static_cast<int64_t>(std::floor(cam.py(Y1, Z)));
  const int64_t bottom = static_cast<int64_t>(std::ceil(cam.py(Y0, Z)));
  for (int64_t y = std::max<int64_t>(top, 0); y < std::min(bottom, cv.H); ++y)
    for (int64_t x = std::max<int64_t>(left, 0); x < std::min(std::max(right, left + 1), cv.W);
         ++x) {
      // Back to metres on the plane: u in [0,1] across, v in [0,1] up.
      const double u = (right > left + 1) ? (x + 0.5 - left) / double(right - left) : 0.5;
      const double v = (bottom > top) ? (bottom - (y + 0.5)) / double(bottom - top) : 0.5;
      Rgb color;
      if (shade(u, v, color)) cv.put(x, y, cls, color, Z);
    }
}

void draw_ground(Canvas& cv, const Camera& cam, double road_half, double sidewalk, Rgb road,
                 Rgb walk, Rgb terrain) {
  for (int64_t y = 0; y < cv.H; ++y) {
    const double dy = y + 0.5 - cam.yh;
    for (int64_t x = 0; x < cv.W; ++x) {
      if (dy <= 0) {  // sky: brighter towards the horizon
        const double t = std::clamp((y + 0.5) / std::max(cam.yh, 1.0), 0.0, 1.0);
        cv.put(x, y, kSky, Rgb{110 + 80 * t, 150 + 60 * t, 215 + 25 * t}, 0, 3.0);
        continue;
      }
      const double Z = cam.f * cam.hc / dy;
      const double X = (x + 0.5 - cam.xv) * Z / cam.f;
      const double ax = std::abs(X);
      if (ax < road_half) {
        // Dashed centre line and solid edge lines stay "road".
        const bool centre = ax < 0.08 && std::fmod(Z, 6.0) < 3.0;
        const bool edge = ax > road_half - 0.15;
        cv.put(x, y, kRoad, (centre || edge) ? Rgb{220, 220, 215} : road, Z, 5.0);
      } else if (ax < road_half + sidewalk) {
        cv.put(x, y, kSidewalk, walk, Z, 7.0);
      } else {
        cv.put(x, y, kTerrain, terrain, Z, 12.0);
      }
    }
  }
}

// Facades along one side of the road: planes parallel to the road at lateral
// distance |X| = offset, so depth changes along the facade (each column's depth
// is where its ray meets the plane).
void draw_street_side(Canvas& cv, const Camera& cam, Rng& rng, double side, double offset) {
  double z = rng.uniform(4, 12);
  while (z < 160) {
    const double length = rng.uniform(8, 30), height = rng.uniform(6, 28);
    const double gap = rng.uniform() < 0.3 ? rng.uniform(4, 15) : 0.0;
    const Rgb wall = jitter(rng, Rgb{150, 130, 115}, 45);
    const double z0 = z, z1 = z + length;
    for (int64_t x = 0; x < cv.W; ++x) {
      const double dx = (x + 0.5 - cam.xv) * side;  // > 0 on this side of the road
      if (dx <= 0) continue;
      const double Z = cam.f * offset / dx;
      if (Z < z0 || Z > z1) continue;
      const int64_t top = static_cast<int64_t>(std::floor(cam.py(height, Z)));
      const int64_t bottom = static_cast<int64_t>(std::ceil(cam.py(0, Z)));
      for (int64_t y = std::max<int64_t>(top, 0); y < std::min(bottom, cv.H); ++y) {
        const double Y = cam.hc - (y + 0.5 - cam.yh) * Z / cam.f;  // height on the facade
        const bool window = std::fmod(Z - z0, 3.0) < 1.5 && std::fmod(Y, 3.2) > 1.1 &&
                            std::fmod(Y, 3.2) < 2.4 && Y > 1.0;
        cv.put(x, y, kBuilding, window ? Rgb{70, 85, 100} : wall, Z, 6.0);
      }
    }
    z = z1 + gap;
  }
}

}  // namespace

SyntheticScene generate_scene(int64_t width, int64_t height, uint64_t seed, int64_t index) {
  COHORT_CHECK(width >= 16 && height >= 16 && width <= 16384 && height <= 16384,
               fmt::format("synthetic scene: size {}x{} (16..16384 per side)", width, height));
  Rng rng{seed * 0x9e3779b97f4a7c15ull ^ (static_cast<uint64_t>(index) + 0x632be59bd9b4e019ull)};
  rng.next();
  Camera cam;
  cam.f = 0.9 * width;
  cam.hc = 1.5;
  cam.yh = height * rng.uniform(0.36, 0.46);
  cam.xv = width * rng.uniform(0.42, 0.58);
  Canvas cv(width, height, rng.next());

  const double road_half = rng.uniform(3.5, 7.0), sidewalk = rng.uniform(1.5, 3.5);
  draw_ground(cv, cam, road_half, sidewalk, jitter(rng, Rgb{85, 85, 92}, 12),
              jitter(rng, Rgb{155, 145, 140}, 15), jitter(rng, Rgb{120, 140, 75}, 20));

  // Distant skyline across the whole view, then the two street sides.
  const double far_z = rng.uniform(180, 260);
  const double x_extent = (width + std::abs(cam.xv - width / 2.0)) * far_z / cam.f;
  for (double X = -x_extent; X < x_extent;) {
    const double w = rng.uniform(15, 45), h = rng.uniform(10, 60);
    const Rgb c = jitter(rng, Rgb{140, 140, 150}, 30);
    draw_upright(cv, cam, X, X + w, 0, h, far_z + rng.uniform(0, 40), kBuilding,
                 [&](double, double, Rgb& out) {
                   out = c;
                   return true;
                 });
    X += w;
  }
  const double building_offset = road_half + sidewalk + rng.uniform(0.3, 3.0);
  draw_street_side(cv, cam, rng, -1.0, building_offset);
  draw_street_side(cv, cam, rng, +1.0, building_offset + rng.uniform(-0.5, 2.0));

  // Trees on the sidewalks: trunk and crown, both vegetation.
  for (int t = rng.below(5) + 1; t > 0; --t) {
    const double side = rng.uniform() < 0.5 ? -1 : 1;
    const double X = side * (road_half + sidewalk * rng.uniform(0.3, 0.8));
    const double Z = rng.uniform(6, 70), r = rng.uniform(1.2, 2.8), h = rng.uniform(3, 5);
    const Rgb leaves = jitter(rng, Rgb{60, 110, 50}, 20);
    draw_upright(cv, cam, X - 0.15, X + 0.15, 0, h, Z, kVegetation, [&](double, double, Rgb& o) {
      o = Rgb{95, 75, 55};
      return true;
    });
    draw_upright(cv, cam, X - r, X + r, h - 0.3, h + 2 * r - 0.3, Z - 0.2, kVegetation,
                 [&](double u, double v, Rgb& o) {
                   const double du = 2 * u - 1, dv = 2 * v - 1;
                   o = scale(leaves, 0.8 + 0.3 * v);
                   return du * du + dv * dv <= 1.0;
                 });
  }

  // Poles along the kerb with a sign or a traffic light on top.
  for (int p = rng.below(5) + 1; p > 0; --p) {
    const double side = rng.uniform() < 0.5 ? -1 : 1;
    const double X = side * (road_half + 0.4), Z = rng.uniform(5, 60), h = rng.uniform(4, 6.5);
    draw_upright(cv, cam, X - 0.08, X + 0.08, 0, h, Z, kPole, [&](double, double, Rgb& o) {
      o = Rgb{115, 115, 120};
      return true;
    });
    if (rng.uniform() < 0.6) {
      const Rgb sign = rng.uniform() < 0.5 ? Rgb{210, 185, 40} : Rgb{40, 80, 170};
      draw_upright(cv, cam, X - 0.35, X + 0.35, h - 0.7, h, Z - 0.05, kTrafficSign,
                   [&](double, double, Rgb& o) {
                     o = sign;
                     return true;
                   });
    } else {
      draw_upright(cv, cam, X - 0.18, X + 0.18, h - 0.9, h, Z - 0.05, kTrafficLight,
                   [&](double, double v, Rgb& o) {
                     o = v > 0.66 ? Rgb{200, 40, 30} : Rgb{30, 30, 30};
                     return true;
                   });
    }
  }

  // Cars in the lanes (rear faces), people on the sidewalks.
  for (int c = rng.below(6); c > 0; --c) {
    const double lane = rng.uniform() < 0.5 ? -0.5 : 0.5;
    const double X = lane * road_half + rng.uniform(-0.4, 0.4), Z = rng.uniform(6, 80);
    const Rgb body = jitter(rng, Rgb{128, 128, 128}, 110);
    draw_upright(cv, cam, X - 0.9, X + 0.9, 0, 1.5, Z, kCar, [&](double u, double v, Rgb& o) {
      const bool glass = v > 0.6 && v < 0.93 && u > 0.1 && u < 0.9;
      const bool wheel = v < 0.2 && (u < 0.22 || u > 0.78);
      const bool light = v > 0.45 && v < 0.58 && (u < 0.12 || u > 0.88);
      o = glass ? Rgb{45, 55, 70} : wheel ? Rgb{25, 25, 25} : light ? Rgb{200, 30, 30} : body;
      return !(v > 0.93 && (u < 0.08 || u > 0.92));  // rounded roof corners
    });
  }
  for (int p = rng.below(6); p > 0; --p) {
    const double side = rng.uniform() < 0.5 ? -1 : 1;
    const double X = side * (road_half + sidewalk * rng.uniform(0.2, 0.9));
    const double Z = rng.uniform(4, 45), h = rng.uniform(1.55, 1.95);
    const Rgb clothes = jitter(rng, Rgb{100, 90, 110}, 70);
    draw_upright(cv, cam, X - 0.28, X + 0.28, 0, h, Z, kPerson, [&](double u, double v, Rgb& o) {
      const double du = 2 * u - 1;
      if (v > 0.86) {  // head
        const double dv = (v - 0.93) / 0.07;
        o = Rgb{200, 160, 130};
        return du * du / 0.25 + dv * dv <= 1.0;
      }
      o = v < 0.45 ? scale(clothes, 0.7) : clothes;
      return std::abs(du) <= (v < 0.45 ? 0.75 : 1.0);
    });
  }
  return std::move(cv.scene);
}

}  // namespace cohort::data
