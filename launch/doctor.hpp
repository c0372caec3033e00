#pragma once
// `cohort doctor`: what a machine and this build offer, and whether the ranks of
// a job can talk, before weeks of cluster time are bet on them.
//
//   cohort doctor                      this process: build, library versions
//                                      (MPI, HDF5, BLAS; CUDA driver/runtime,
//                                      cuDNN, cuBLAS, NCCL in CUDA builds), the
//                                      visible GPUs, and a small op on the GPU
//   mpirun -np N cohort doctor         the same on rank 0, plus every rank's host,
//   srun --mpi=pmix cohort doctor      local rank and device (the launcher's
//                                      device assignment, with its checks), and
//                                      collectives that must give known sums: an
//                                      all-reduce over MPI on the host and, on
//                                      GPUs, over NCCL on the device, timed
//
// Rank 0 prints the report; the exit status is 0 when every check passed, 1
// otherwise (each failure is named in the report).
#include "comm/mpi_session.hpp"
#include "core/device.hpp"

namespace cohort::launch {

// Alone: `device` is where the GPU check runs (the CPU: none).
int run_doctor(core::Device device);
// As one of the ranks of a launcher (the session already made).
int run_doctor(comm::MpiSession& session);

}  // namespace cohort::launch
