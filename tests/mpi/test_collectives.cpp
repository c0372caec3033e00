// Collectives of the MPI backend against values computed from rank numbers:
// rank r contributes r + 1 + (i mod 16) at element i, so with n ranks the sum is
// n(n+1)/2 + n (i mod 16). The numbers are small integers, exact in every dtype
// (bf16 holds integers up to 256 exactly), so sums compare exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::mpitest {
namespace {

using comm::ReduceOp;
using comm::WorkPtr;
using core::DType;
using core::Tensor;
using testing::error_of;

double contribution(int rank, int64_t i) {
  return rank + 1 + static_cast<double>(i % 16);
}
double expected_sum(int ranks, int64_t i) {
  return ranks * (ranks + 1) / 2.0 + ranks * static_cast<double>(i % 16);
}

std::vector<double> contributions(int rank, int64_t count, int64_t first = 0) {
  std::vector<double> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    v[static_cast<size_t>(i)] = contribution(rank, first + i);
  return v;
}

// Tolerance of an average (sum / n rounded to the dtype).
double tolerance(DType dtype, double value) {
  switch (dtype) {
    case DType::bf16:
      return std::abs(value) * 1.0 / 128;
    case DType::f16:
      return std::abs(value) * 1.0 / 1024;
    case DType::f32:
      return std::abs(value) * 1e-6;
    default:
      return std::abs(value) * 1e-12;
  }
}

class CollectiveDtype : public ::testing::TestWithParam<DType> {};

std::string dtype_label(const ::testing::TestParamInfo<DType>& info) {
  return std::string(core::dtype_name(info.param));
}

const auto kAllDtypes = ::testing::Values(DType::f32, DType::bf16, DType::f16, DType::f64,
                                          DType::i32, DType::i64, DType::u8);
const auto kFloatDtypes = ::testing::Values(DType::f32, DType::bf16, DType::f16, DType::f64);

TEST_P(CollectiveDtype, AllReduceSum) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  const int64_t count = 37;
  Tensor t = host_tensor(contributions(r, count), GetParam());
  WorkPtr work = comm->all_reduce(t, ReduceOp::sum);
  work->wait();
  EXPECT_TRUE(work->completed());
  const std::vector<double> got = t.to_vector();
  for (int64_t i = 0; i < count; ++i)
    ASSERT_EQ(got[static_cast<size_t>(i)], expected_sum(n, i)) << "element " << i;
}

TEST_P(CollectiveDtype, ReduceScatterSumIntoShapedOutput) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  const int64_t block = 5;
  // Input viewed as [n, block]: any shape works, only numel matters.
  Tensor input = host_tensor(contributions(r, n * block), GetParam()).view(core::Shape{n, block});
  Tensor output = Tensor::zeros(core::Shape{block}, GetParam());
  comm->reduce_scatter(input, output, ReduceOp::sum)->wait();
  const std::vector<double> got = output.to_vector();
  for (int64_t i = 0; i < block; ++i)
    EXPECT_EQ(got[static_cast<size_t>(i)], expected_sum(n, r * block + i)) << "element " << i;
}

TEST_P(CollectiveDtype, AllGatherIntoShapedOutput) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  const int64_t block = 7;
  std::vector<double> mine(block);
  for (int64_t i = 0; i < block; ++i)
    mine[static_cast<size_t>(i)] = 10.0 * r + i;
  Tensor input = host_tensor(mine, GetParam());
  Tensor output = Tensor::zeros(core::Shape{n, block}, GetParam());
  comm->all_gather(input, output)->wait();
  const std::vector<double> got = output.to_vector();
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < block; ++i)
      EXPECT_EQ(got[static_cast<size_t>(q * block + i)], 10.0 * q + i)
          << "rank " << q << " i " << i;
}

TEST_P(CollectiveDtype, BroadcastFromLastRank) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  const int root = n - 1;  // non-zero whenever n > 1
  std::vector<double> values(11, r == root ? 0.0 : 99.0);
  if (r == root)
    for (size_t i = 0; i < values.size(); ++i)
      values[i] = 7.0 + static_cast<double>(i);
  Tensor t = host_tensor(values, GetParam());
  comm->broadcast(t, root)->wait();
  const std::vector<double> got = t.to_vector();
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i], 7.0 + static_cast<double>(i));
}

// Every rank as root in turn; the result is defined on the root only.
TEST_P(CollectiveDtype, ReduceSumToEveryRoot) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  const int64_t count = 37;
  for (int root = 0; root < n; ++root) {
    Tensor t = host_tensor(contributions(r, count), GetParam());
    WorkPtr work = comm->reduce(t, root, ReduceOp::sum);
    EXPECT_EQ(work->info().op, comm::CollectiveOp::reduce);
    EXPECT_EQ(work->info().root, root);
    work->wait();
    if (r != root) continue;
    const std::vector<double> got = t.to_vector();
    for (int64_t i = 0; i < count; ++i)
      ASSERT_EQ(got[static_cast<size_t>(i)], expected_sum(n, i)) << "root " << root << " i " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CollectiveDtype, kAllDtypes, dtype_label);

class AverageDtype : public ::testing::TestWithParam<DType> {};

TEST_P(AverageDtype, AllReduceAndReduceScatterAverage) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  const int64_t count = 4 * n;
  Tensor t = host_tensor(contributions(r, count), GetParam());
  comm->all_reduce(t, ReduceOp::average)->wait();
  std::vector<double> got = t.to_vector();
  for (int64_t i = 0; i < count; ++i) {
    const double want = expected_sum(n, i) / n;
    EXPECT_NEAR(got[static_cast<size_t>(i)], want, tolerance(GetParam(), want)) << "element " << i;
  }

  Tensor input = host_tensor(contributions(r, count), GetParam());
  Tensor output = Tensor::zeros(core::Shape{4}, GetParam());
  comm->reduce_scatter(input, output, ReduceOp::average)->wait();
  got = output.to_vector();
  for (int64_t i = 0; i < 4; ++i) {
    const double want = expected_sum(n, r * 4 + i) / n;
    EXPECT_NEAR(got[static_cast<size_t>(i)], want, tolerance(GetParam(), want)) << "element " << i;
  }
}

TEST_P(AverageDtype, ReduceAverageToEveryRoot) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  const int64_t count = 19;
  for (int root = 0; root < n; ++root) {
    Tensor t = host_tensor(contributions(r, count), GetParam());
    comm->reduce(t, root, ReduceOp::average)->wait();
    if (r != root) continue;
    const std::vector<double> got = t.to_vector();
    for (int64_t i = 0; i < count; ++i) {
      const double want = expected_sum(n, i) / n;
      EXPECT_NEAR(got[static_cast<size_t>(i)], want, tolerance(GetParam(), want))
          << "root " << root << " element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AverageDtype, kFloatDtypes, dtype_label);

TEST(Collectives, LargeAllReduceUsesEveryElement) {
  // 1 MiB: large enough for MPI's segmented/pipelined algorithms.
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  const int64_t count = int64_t{1} << 18;
  Tensor t = host_tensor(contributions(r, count), DType::f32);
  comm->all_reduce(t)->wait();
  const float* p = t.data<float>();
  int64_t wrong = 0;
  for (int64_t i = 0; i < count; ++i)
    wrong += p[i] != static_cast<float>(expected_sum(n, i));
  EXPECT_EQ(wrong, 0);
}

TEST(Collectives, InPlaceReduceScatterAndAllGather) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  const int64_t block = 6;
  // reduce_scatter: output is this rank's block of the input (ZeRO's layout).
  Tensor flat = host_tensor(contributions(r, n * block), DType::f32);
  Tensor mine = flat.flat(r * block, block);
  comm->reduce_scatter(flat, mine, ReduceOp::sum)->wait();
  std::vector<double> got = mine.to_vector();
  for (int64_t i = 0; i < block; ++i)
    EXPECT_EQ(got[static_cast<size_t>(i)], expected_sum(n, r * block + i)) << "element " << i;

  // all_gather: input is this rank's block of the output.
  Tensor whole = Tensor::full(core::Shape{n * block}, -1.0, DType::f32);
  Tensor slot = whole.flat(r * block, block);
  for (int64_t i = 0; i < block; ++i)
    slot.data<float>()[i] = static_cast<float>(100 * r + i);
  comm->all_gather(slot, whole)->wait();
  got = whole.to_vector();
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < block; ++i)
      EXPECT_EQ(got[static_cast<size_t>(q * block + i)], 100.0 * q + i);
}

TEST(Collectives, BucketsAreViewsIntoOneFlatBuffer) {
  // The data-parallel engine all-reduces views of a graph's flat gradient
  // buffer; neighbouring views must not be touched by each other's collective.
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  Tensor grads = host_tensor(contributions(r, 30), DType::f32);
  WorkPtr first = comm->all_reduce(grads.flat(0, 10), ReduceOp::sum);
  WorkPtr third = comm->all_reduce(grads.flat(20, 10), ReduceOp::average);
  first->wait();
  third->wait();
  const std::vector<double> got = grads.to_vector();
  for (int64_t i = 0; i < 30; ++i) {
    const double own = contribution(r, i);
    const double want = i < 10 ? expected_sum(n, i) : i < 20 ? own : expected_sum(n, i) / n;
    EXPECT_FLOAT_EQ(got[static_cast<size_t>(i)], want) << "element " << i;
  }
}

// ZeRO's bucket pattern: consecutive, unequal pieces of one buffer, piece q
// reduced to rank q, all in flight at once. Each root gets exactly its piece's
// average; the pieces it only contributed to are not its business.
TEST(Collectives, PiecesOfOneBufferReducedToTheirOwnersAtOnce) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  std::vector<int64_t> begin(static_cast<size_t>(n) + 1, 0);
  for (int q = 0; q < n; ++q)
    begin[static_cast<size_t>(q) + 1] = begin[static_cast<size_t>(q)] + 3 + 2 * q;
  const int64_t total = begin.back();
  Tensor staging = host_tensor(contributions(r, total), DType::f32);
  std::vector<WorkPtr> works;
  for (int q = 0; q < n; ++q) {
    const int64_t lo = begin[static_cast<size_t>(q)], hi = begin[static_cast<size_t>(q) + 1];
    works.push_back(comm->reduce(staging.flat(lo, hi - lo), q, ReduceOp::average));
  }
  for (int q = n; q-- > 0;)
    works[static_cast<size_t>(q)]->wait();
  const std::vector<double> got = staging.to_vector();
  for (int64_t i = begin[static_cast<size_t>(r)]; i < begin[static_cast<size_t>(r) + 1]; ++i)
    EXPECT_FLOAT_EQ(got[static_cast<size_t>(i)], expected_sum(n, i) / n) << "element " << i;
  EXPECT_EQ(comm->totals(comm::CollectiveOp::reduce).calls, n);
  EXPECT_EQ(comm->totals(comm::CollectiveOp::reduce).bytes, total * 4);
  EXPECT_EQ(comm->totals(comm::CollectiveOp::all_reduce).calls, 0);
}

TEST(Collectives, AsyncOverlapWaitInReverseOrder) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  std::vector<Tensor> tensors;
  std::vector<WorkPtr> works;
  for (int k = 0; k < 4; ++k) {
    std::vector<double> v(64 + k, 1000.0 * k + r);
    tensors.push_back(host_tensor(v, DType::f32));
    works.push_back(comm->all_reduce(tensors.back(), ReduceOp::sum));
  }
  Tensor gathered = Tensor::zeros(core::Shape{n}, DType::i32);
  Tensor rank_value = host_tensor({static_cast<double>(r)}, DType::i32);
  works.push_back(comm->all_gather(rank_value, gathered));
  EXPECT_EQ(comm->sequence(), 5u);
  for (int k = static_cast<int>(works.size()) - 1; k >= 0; --k)
    works[static_cast<size_t>(k)]->wait();
  const double rank_sum = n * (n - 1) / 2.0;
  for (int k = 0; k < 4; ++k) {
    const std::vector<double> got = tensors[static_cast<size_t>(k)].to_vector();
    for (double v : got)
      EXPECT_EQ(v, 1000.0 * k * n + rank_sum) << "tensor " << k;
  }
  const std::vector<double> ranks = gathered.to_vector();
  for (int q = 0; q < n; ++q)
    EXPECT_EQ(ranks[static_cast<size_t>(q)], q);
}

TEST(Collectives, TestPollsUntilComplete) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  Tensor t = host_tensor(contributions(r, 100), DType::f32);
  WorkPtr work = comm->all_reduce(t);
  EXPECT_EQ(work->info().op, comm::CollectiveOp::all_reduce);
  EXPECT_EQ(work->info().count, 100);
  int polls = 0;
  while (!work->test())
    ++polls;
  EXPECT_TRUE(work->completed());
  EXPECT_TRUE(work->test());  // stays complete
  EXPECT_EQ(t.to_vector()[3], expected_sum(n, 3));
  (void)polls;
}

TEST(Collectives, DroppedWorkStillCompletes) {
  auto comm = make_comm();
  const int n = comm->size(), r = comm->rank();
  Tensor t = host_tensor(contributions(r, 20), DType::f64);
  (void)comm->all_reduce(t);  // the handle dies at once: its destructor waits
  EXPECT_EQ(t.to_vector()[5], expected_sum(n, 5));
}

TEST(Collectives, BarrierAndSequenceNumbers) {
  auto comm = make_comm();
  EXPECT_EQ(comm->sequence(), 0u);
  WorkPtr b = comm->barrier();
  EXPECT_EQ(b->info().sequence, 1u);
  EXPECT_EQ(b->info().op, comm::CollectiveOp::barrier);
  b->wait();
  Tensor t = host_tensor({1.0}, DType::f32);
  WorkPtr a = comm->all_reduce(t);
  EXPECT_EQ(a->info().sequence, 2u);
  a->wait();
  // wait_stream on a host backend is a host wait.
  WorkPtr c = comm->barrier();
  c->wait_stream(nullptr);
  EXPECT_TRUE(c->completed());
  EXPECT_EQ(comm->sequence(), 3u);
}

TEST(Collectives, ZeroElementCollectivesComplete) {
  auto comm = make_comm();
  Tensor empty = Tensor::zeros(core::Shape{0}, DType::f32);
  comm->all_reduce(empty)->wait();
  comm->broadcast(empty, 0)->wait();
  comm->reduce(empty, comm->size() - 1, ReduceOp::average)->wait();
  EXPECT_EQ(comm->sequence(), 3u);
}

// Argument errors are found before anything is sent, identically on every
// rank, so each rank throws and no collective is left half-issued.
TEST(Collectives, BadArgumentsAreRefusedWithShapes) {
  auto comm = make_comm();
  const int n = comm->size();
  Tensor in = Tensor::zeros(core::Shape{n * 4 + 1}, DType::f32);
  Tensor out = Tensor::zeros(core::Shape{4}, DType::f32);
  std::string message = error_of([&] { comm->reduce_scatter(in, out); });
  EXPECT_NE(message.find("reduce_scatter"), std::string::npos) << message;
  EXPECT_NE(message.find(in.str()), std::string::npos) << message;

  Tensor gathered = Tensor::zeros(core::Shape{n * 3}, DType::f32);
  Tensor wrong_dtype = Tensor::zeros(core::Shape{3}, DType::f16);
  message = error_of([&] { comm->all_gather(wrong_dtype, gathered); });
  EXPECT_NE(message.find("all_gather"), std::string::npos) << message;

  Tensor ints = Tensor::zeros(core::Shape{3}, DType::i32);
  message = error_of([&] { comm->all_reduce(ints, ReduceOp::average); });
  EXPECT_NE(message.find("average needs a floating-point tensor"), std::string::npos) << message;

  message = error_of([&] { comm->broadcast(out, n); });
  EXPECT_NE(message.find("root"), std::string::npos) << message;
  message = error_of([&] { comm->reduce(out, -1); });
  EXPECT_NE(message.find("reduce of " + out.str()), std::string::npos) << message;
  EXPECT_NE(message.find("root -1"), std::string::npos) << message;
  message = error_of([&] { comm->reduce(ints, 0, ReduceOp::average); });
  EXPECT_NE(message.find("reduce: average needs a floating-point tensor"), std::string::npos)
      << message;

  // Overlapping, but not the in-place block: refused (MPI forbids aliasing).
  Tensor buffer = Tensor::zeros(core::Shape{n * 4 + 2}, DType::f32);
  if (n > 1) {
    message = error_of([&] { comm->all_gather(buffer.flat(1, 4), buffer.flat(0, n * 4)); });
    EXPECT_NE(message.find("overlaps"), std::string::npos) << message;
  }
  EXPECT_EQ(comm->sequence(), 0u) << "refused calls must not consume sequence numbers";
  EXPECT_EQ(comm->totals(comm::CollectiveOp::reduce).calls, 0) << "nor count as issued";
}

TEST(Collectives, MpiBackendRefusesNonCpuDevice) {
  const std::string message = error_of([] {
    comm::make_communicator(comm::Backend::mpi, MPI_COMM_WORLD, core::Device::cuda(0),
                            default_options());
  });
  EXPECT_NE(message.find("host tensors"), std::string::npos) << message;
}

}  // namespace
}  // namespace cohort::mpitest
