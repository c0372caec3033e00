#pragma once
// Deterministic parameter initialisation. Each tensor's values come from its own
// stream (seed mixed with the parameter's full name), so they do not depend on
// construction order or on the device.
#include <cstdint>
#include <string>

#include "core/nn/parameter.hpp"

namespace cohort::core::nn {

// Fills a CPU f32 tensor according to `init`.
void initialise(Tensor& cpu_f32, Init init, int64_t fan_in, int64_t fan_out, uint64_t seed,
                const std::string& name);

}  // namespace cohort::core::nn
