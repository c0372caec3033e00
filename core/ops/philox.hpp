#pragma once
// Philox-4x32-10 counter-based RNG (Salmon et al., SC'11), shared by the CPU and
// CUDA backends so that a dropout mask is the same bits on every device. A draw is
// a pure function of (seed, offset, index): nothing is stored between forward and
// backward, and a resumed run draws the same numbers.
#include <cstdint>

#include "core/host_device.hpp"

namespace cohort::core {

COHORT_HOST_DEVICE inline void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

// Returns the first 32-bit word of Philox-4x32-10 applied to the counter
// (index, offset) under the key `seed`.
COHORT_HOST_DEVICE inline uint32_t philox4x32_first(uint64_t seed, uint64_t offset,
                                                    uint64_t index) {
  uint32_t c0 = static_cast<uint32_t>(index), c1 = static_cast<uint32_t>(index >> 32);
  uint32_t c2 = static_cast<uint32_t>(offset), c3 = static_cast<uint32_t>(offset >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c0;
}

// Dropout keeps an element when its uniform draw in [0, 1) is >= p.
COHORT_HOST_DEVICE inline bool dropout_keep(uint64_t seed, uint64_t offset, uint64_t index,
                                            float p) {
  const uint32_t bits = philox4x32_first(seed, offset, index);
  const float u = static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);  // 24 random bits
  return u >= p;
}

}  // namespace cohort::core
