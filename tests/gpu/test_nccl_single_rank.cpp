// The NCCL backend on one rank, against the MPI backend on the same inputs.
// With one rank every collective is an identity (or a copy), so the comparison
// is exact; what it proves is the plumbing: dtype mapping (bf16 native, f16,
// integers), ncclAvg, the in-place forms, the communicator's own stream waiting
// for the compute stream (the inputs are uploaded on the compute stream just
// before each collective), wait_stream ordering and the barrier.
// The gpu suite's main does not start MPI; this file starts it (singleton MPI,
// no mpirun needed) through comm's MpiSession unless a session already exists.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "comm/mpi_session.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

using comm::ReduceOp;

comm::MpiSession& mpi() {
  static std::optional<comm::MpiSession> own;
  if (comm::MpiSession* existing = comm::MpiSession::current()) return *existing;
  own.emplace();
  return *own;
}

struct Backends {
  std::unique_ptr<comm::Communicator> nccl, mpi;
};

Backends make_backends() {
  comm::MpiSession& session = mpi();
  EXPECT_EQ(session.size(), 1) << "this test runs on one rank";
  comm::CommOptions options;
  options.timeout_s = 60;
  options.check = true;  // exercises the fingerprint exchange for both backends
  return {comm::make_communicator(comm::Backend::nccl, MPI_COMM_WORLD, gpu().device(), options),
          comm::make_communicator(comm::Backend::mpi, MPI_COMM_WORLD, Device::cpu(), options)};
}

// Distinct small integers: exact in every dtype under test.
std::vector<double> ramp(int64_t n, double start = 1) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = start + static_cast<double>(i % 97);
  return v;
}

Tensor host(const std::vector<double>& v, DType dtype) {
  return Tensor::from_vector(v, Shape{static_cast<int64_t>(v.size())}, dtype);
}

// Upload on the compute stream, without waiting: the collective must wait for it.
Tensor device_copy(const Tensor& h) {
  Tensor d = Tensor::empty(h.shape(), h.dtype(), gpu().device(), gpu().stream());
  d.copy_from(h, gpu().stream());
  return d;
}

std::vector<double> read(const Tensor& t) {
  return t.device().is_cuda() ? t.to_vector(gpu().stream()) : t.to_vector();
}

class NcclSingleRank : public ::testing::TestWithParam<DType> {};

TEST_P(NcclSingleRank, EveryCollectiveMatchesTheMpiBackend) {
  Backends b = make_backends();
  const DType dtype = GetParam();
  const int64_t n = 4099;  // odd: no vector-width luck
  const auto s = gpu().stream();

  // all_reduce sum and average (average: floating dtypes only)
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::average}) {
    if (op == ReduceOp::average && !core::is_floating(dtype)) continue;
    Tensor h = host(ramp(n), dtype);
    Tensor d = device_copy(h);
    b.nccl->all_reduce(d, op, s)->wait_stream(s);
    b.mpi->all_reduce(h, op)->wait();
    EXPECT_EQ(read(d), read(h)) << "all_reduce " << comm::reduce_name(op);
  }
  // reduce_scatter, separate and in place (output = this rank's block)
  {
    Tensor h_in = host(ramp(n, 3), dtype), h_out = Tensor::zeros(Shape{n}, dtype);
    Tensor d_in = device_copy(h_in), d_out = Tensor::zeros(Shape{n}, dtype, gpu().device(), s);
    b.nccl->reduce_scatter(d_in, d_out, ReduceOp::sum, s)->wait();
    b.mpi->reduce_scatter(h_in, h_out, ReduceOp::sum)->wait();
    EXPECT_EQ(read(d_out), read(h_out)) << "reduce_scatter";
    Tensor d_whole = device_copy(h_in);
    b.nccl->reduce_scatter(d_whole, d_whole.flat(0, n), ReduceOp::sum, s)->wait();
    EXPECT_EQ(read(d_whole), read(h_out)) << "reduce_scatter in place";
  }
  // all_gather, separate and in place
  {
    Tensor h_in = host(ramp(n, 5), dtype), h_out = Tensor::zeros(Shape{1, n}, dtype);
    Tensor d_in = device_copy(h_in), d_out = Tensor::zeros(Shape{1, n}, dtype, gpu().device(), s);
    b.nccl->all_gather(d_in, d_out, s)->wait_stream(s);
    b.mpi->all_gather(h_in, h_out)->wait();
    EXPECT_EQ(read(d_out), read(h_out)) << "all_gather";
    Tensor d_whole = device_copy(h_in);
    b.nccl->all_gather(d_whole.flat(0, n), d_whole, s)->wait();
    EXPECT_EQ(read(d_whole), read(h_out)) << "all_gather in place";
  }
  // reduce to root 0 (sum and average), a view into a larger buffer (ZeRO's pieces)
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::average}) {
    if (op == ReduceOp::average && !core::is_floating(dtype)) continue;
    Tensor h = host(ramp(3 * n, 11), dtype);
    Tensor d = device_copy(h);
    b.nccl->reduce(d.flat(n, n), 0, op, s)->wait_stream(s);
    b.mpi->reduce(h.flat(n, n), 0, op)->wait();
    EXPECT_EQ(read(d), read(h)) << "reduce " << comm::reduce_name(op);
  }
  // broadcast from root 0, a view into a larger buffer (a bucket)
  {
    Tensor h = host(ramp(3 * n, 7), dtype);
    Tensor d = device_copy(h);
    b.nccl->broadcast(d.flat(n, n), 0, s)->wait_stream(s);
    b.mpi->broadcast(h.flat(n, n), 0)->wait();
    EXPECT_EQ(read(d), read(h)) << "broadcast";
  }
  b.nccl->barrier(s)->wait();
  b.mpi->barrier()->wait();
  // The nccl side also ran the two in-place forms.
  EXPECT_EQ(b.nccl->sequence(), b.mpi->sequence() + 2);
  EXPECT_STREQ(b.nccl->backend_name(), "nccl");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NcclSingleRank,
                         ::testing::Values(DType::f32, DType::bf16, DType::f16, DType::i32,
                                           DType::i64, DType::u8),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(core::dtype_name(info.param));
                         });

TEST(NcclSingleRankWork, ManyQueuedCollectivesCompleteInOrder) {
  // Queue several all_reduces on the NCCL stream, poll with test(), drop one
  // handle unwaited (its destructor orders the compute stream after it).
  Backends b = make_backends();
  const auto s = gpu().stream();
  std::vector<Tensor> tensors;
  std::vector<comm::WorkPtr> works;
  for (int k = 0; k < 8; ++k) {
    tensors.push_back(device_copy(host(ramp(1 << 16, k), DType::f32)));
    works.push_back(b.nccl->all_reduce(tensors.back(), ReduceOp::average, s));
  }
  works.pop_back();  // dropped before completion
  for (auto it = works.rbegin(); it != works.rend(); ++it)
    while (!(*it)->test()) {
    }
  for (int k = 0; k < 8; ++k)
    EXPECT_EQ(read(tensors[static_cast<size_t>(k)]), ramp(1 << 16, k)) << "tensor " << k;
  EXPECT_EQ(b.nccl->sequence(), 8u);
}

TEST(NcclSingleRankWork, RefusesHostTensors) {
  Backends b = make_backends();
  Tensor h = host(ramp(8), DType::f32);
  try {
    b.nccl->all_reduce(h, ReduceOp::sum, gpu().stream());
    ADD_FAILURE() << "a host tensor was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must be on cuda:0 for the nccl communicator"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace cohort::gputest
