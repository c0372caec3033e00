#pragma once
// A small fork-join helper for converters (decode/encode files in parallel).
#include <cstdint>
#include <functional>

namespace cohort::data {

// The CPUs this process may run on (its affinity mask: what Slurm or a launcher
// binding gave it), at least 1.
int usable_cores();
// `requested` threads, or usable_cores() when 0.
int resolve_threads(int requested);

// Calls fn(i) for every i in [0, n) from up to `threads` threads (0 = all cores);
// items are handed out in increasing order. If fn throws, items not yet started are
// skipped and the first exception is rethrown once every thread has stopped.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn);

}  // namespace cohort::data
