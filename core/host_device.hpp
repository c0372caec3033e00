#pragma once
// COHORT_HOST_DEVICE marks inline functions that both the CPU backend and CUDA
// kernels call (Philox, the per-task gradient solves, the resize index
// arithmetic), so that both compute the same steps from one source.
#if defined(__CUDACC__)
#define COHORT_HOST_DEVICE __host__ __device__
#else
#define COHORT_HOST_DEVICE
#endif
