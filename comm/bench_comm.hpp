#pragma once
// `cohort bench comm`: collective bandwidth in the layout of nccl-tests, so
// numbers can be put side by side with all_reduce_perf & co.
//   size   bytes of the whole buffer (all_reduce, reduce: the tensor;
//          reduce_scatter: the input; all_gather: the output), doubling from
//          min to max
//   count  elements of that buffer (a multiple of the world size for
//          reduce_scatter and all_gather)
//   time   mean microseconds per collective (the slowest rank's mean)
//   algbw  size / time
//   busbw  algbw * 2(n-1)/n for all_reduce, * (n-1)/n for reduce_scatter and
//          all_gather, * 1 for reduce (root 0; not in the default sweep, add
//          CollectiveOp::reduce to `ops`): the traffic each link carries,
//          comparable across n
// Collective over MPI_COMM_WORLD; uses the process's MpiSession (or starts one).
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "comm/collective.hpp"
#include "core/dtype.hpp"

namespace cohort::comm {

struct CommBenchOptions {
  std::string backend = "mpi";  // mpi (host tensors) or nccl (each rank's GPU)
  int64_t min_bytes = 8;
  int64_t max_bytes = int64_t{1} << 30;
  int warmup_iters = 5;
  int iters = 20;
  core::DType dtype = core::DType::f32;
  std::vector<CollectiveOp> ops = {CollectiveOp::all_reduce, CollectiveOp::reduce_scatter,
                                   CollectiveOp::all_gather};
  std::FILE* out = stdout;  // rank 0 prints the table here; nullptr prints nothing
};

struct CommBenchRow {
  CollectiveOp op = CollectiveOp::all_reduce;
  int64_t bytes = 0, count = 0;
  double time_us = 0, algbw_gbs = 0, busbw_gbs = 0;
};

// busbw / algbw for `op` over `ranks` ranks (nccl-tests' factors).
double bus_bandwidth_factor(CollectiveOp op, int ranks);

// Runs the sweep on every rank; returns the rows (same on every rank).
std::vector<CommBenchRow> run_comm_bench(const CommBenchOptions& options);

}  // namespace cohort::comm
