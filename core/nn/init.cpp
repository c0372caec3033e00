#include "core/nn/init.hpp"

#include <cmath>
#include <random>

namespace cohort::core::nn {
namespace {

uint64_t mix(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;  // FNV-1a over the name, keyed by the seed
  for (unsigned char c : name)
    h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

void initialise(Tensor& t, Init init, int64_t fan_in, int64_t fan_out, uint64_t seed,
                const std::string& name) {
  float* p = t.data<float>();
  const int64_t n = t.numel();
  std::mt19937_64 rng(mix(seed, name));
  // Uniform from raw bits, normal by Box-Muller: the same numbers on every platform.
  auto uniform = [&rng] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  switch (init) {
    case Init::zeros:
      for (int64_t i = 0; i < n; ++i)
        p[i] = 0.0f;
      break;
    case Init::ones:
      for (int64_t i = 0; i < n; ++i)
        p[i] = 1.0f;
      break;
    case Init::kaiming_normal_fan_out: {
      const double stddev = std::sqrt(2.0 / static_cast<double>(fan_out));
      for (int64_t i = 0; i < n; ++i) {
        const double u1 = uniform(), u2 = uniform();
        p[i] =
            static_cast<float>(stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
      }
      break;
    }
    case Init::kaiming_uniform:
    case Init::uniform_fan_in: {
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      for (int64_t i = 0; i < n; ++i)
        p[i] = static_cast<float>((2.0 * uniform() - 1.0) * bound);
      break;
    }
  }
}

}  // namespace cohort::core::nn
