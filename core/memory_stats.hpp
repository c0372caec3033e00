#pragma once
// How much memory tensors hold on a device, now and at the peak since the last
// reset: what `cohort bench train` reports next to PyTorch's
// torch.cuda.max_memory_allocated, and what tests use to prove that memory is
// given back (saved activations freed after backward, shards instead of copies).
//
// CUDA: the stream-ordered pool's own counters (used = handed to tensors,
// reserved = taken from the device), so memory freed on a stream counts as free
// once the free is enqueued. CPU: cohort's host tensor allocations, counted by
// allocate_storage (page-locked staging buffers of a CUDA build excluded).
#include <cstddef>

#include "core/device.hpp"

namespace cohort::core {

struct MemoryStats {
  size_t in_use = 0, peak_in_use = 0;
  size_t reserved = 0, peak_reserved = 0;  // CPU: the same as in_use / peak_in_use
};

MemoryStats memory_stats(Device device);
// Peaks restart from the current values.
void reset_peak_memory(Device device);

}  // namespace cohort::core
