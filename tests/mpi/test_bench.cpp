// The collective benchmark on a tiny sweep: rows, bandwidth arithmetic and the
// nccl-tests table that rank 0 prints.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "comm/bench_comm.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"

namespace cohort::mpitest {
namespace {

using comm::CollectiveOp;

std::string read_all(std::FILE* f) {
  std::rewind(f);
  std::string text;
  char buffer[512];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0)
    text.append(buffer, n);
  return text;
}

TEST(CommBench, SweepsSizesAndPrintsNcclTestsColumns) {
  const int n = session().size();
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  comm::CommBenchOptions options;
  options.min_bytes = 8;
  options.max_bytes = 1024;
  options.warmup_iters = 1;
  options.iters = 3;
  options.out = out;
  const std::vector<comm::CommBenchRow> rows = comm::run_comm_bench(options);

  int all_reduce_rows = 0;
  for (const comm::CommBenchRow& row : rows) {
    EXPECT_GT(row.time_us, 0.0);
    EXPECT_NEAR(row.algbw_gbs, row.bytes / (row.time_us * 1e-6) / 1e9,
                1e-9 * row.algbw_gbs + 1e-12);
    EXPECT_NEAR(row.busbw_gbs, row.algbw_gbs * comm::bus_bandwidth_factor(row.op, n), 1e-12);
    if (row.op == CollectiveOp::all_reduce)
      ++all_reduce_rows;
    else
      EXPECT_EQ(row.count % n, 0) << "reduce_scatter/all_gather counts are multiples of n";
  }
  EXPECT_EQ(all_reduce_rows, 8);  // 8, 16, ..., 1024 bytes
  EXPECT_DOUBLE_EQ(comm::bus_bandwidth_factor(CollectiveOp::all_reduce, 4), 1.5);
  EXPECT_DOUBLE_EQ(comm::bus_bandwidth_factor(CollectiveOp::all_gather, 4), 0.75);

  const std::string text = read_all(out);
  std::fclose(out);
  if (session().rank() == 0) {
    for (const char* expected : {"# all_reduce", "# reduce_scatter", "# all_gather", "algbw",
                                 "busbw", "(elements)", "float", "Avg bus bandwidth"})
      EXPECT_NE(text.find(expected), std::string::npos) << expected << " missing in\n" << text;
  } else {
    EXPECT_TRUE(text.empty()) << "only rank 0 prints";
  }
}

}  // namespace
}  // namespace cohort::mpitest
