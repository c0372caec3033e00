#include "comm/mpi_communicator.hpp"

#include <fmt/format.h>

#include <climits>
#include <cstring>
#include <exception>

#include "comm/mpi_check.hpp"
#include "core/error.hpp"

namespace cohort::comm {
namespace {

using core::BFloat16;
using core::DType;
using core::Half;
using core::Tensor;

// MPI_User_function for 16-bit floats: inout[i] = round(float(in[i]) + float(inout[i])).
template <typename T>
void sum_16bit(void* in, void* inout, int* len, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i)
    b[i] = T(static_cast<float>(a[i]) + static_cast<float>(b[i]));
}

template <typename T>
void scale_elements(void* data, int64_t n, double factor) {
  T* p = static_cast<T*>(data);
  if constexpr (std::is_same_v<T, BFloat16> || std::is_same_v<T, Half>) {
    const float f = static_cast<float>(factor);
    for (int64_t i = 0; i < n; ++i)
      p[i] = T(static_cast<float>(p[i]) * f);
  } else {
    for (int64_t i = 0; i < n; ++i)
      p[i] = static_cast<T>(p[i] * factor);
  }
}

// average = sum / size (floating dtypes only; checked by Communicator).
void scale_tensor(const Tensor& t, double factor) {
  switch (t.dtype()) {
    case DType::f32:
      return scale_elements<float>(t.raw(), t.numel(), factor);
    case DType::f64:
      return scale_elements<double>(t.raw(), t.numel(), factor);
    case DType::bf16:
      return scale_elements<BFloat16>(t.raw(), t.numel(), factor);
    case DType::f16:
      return scale_elements<Half>(t.raw(), t.numel(), factor);
    default:
      COHORT_FAIL(fmt::format("average of {}: not a floating dtype", t.str()));
  }
}

int mpi_count(const char* what, int64_t count) {
  COHORT_CHECK(
      count <= INT_MAX,
      fmt::format("{}: {} elements exceed MPI's int count; split the buffer", what, count));
  return static_cast<int>(count);
}

class MpiPending final : public PendingCollective {
 public:
  MpiPending(MPI_Request request, Tensor keep_a, Tensor keep_b)
      : m_request(request), m_keep_a(std::move(keep_a)), m_keep_b(std::move(keep_b)) {}
  // Runs after completion (average scaling, copy out of a staging buffer).
  std::function<void()> on_finish;

  bool poll() override {
    int done = 0;
    COHORT_MPI_CHECK(MPI_Test(&m_request, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }
  void block() override { COHORT_MPI_CHECK(MPI_Wait(&m_request, MPI_STATUS_IGNORE)); }
  void finish() override {
    if (on_finish) on_finish();
  }
  void release() noexcept override {
    // Non-blocking collectives cannot be cancelled or freed (MPI 3.1, 5.12);
    // the buffers stay valid only by waiting.
    if (m_request != MPI_REQUEST_NULL)
      COHORT_MPI_CHECK_PRINT(MPI_Wait(&m_request, MPI_STATUS_IGNORE));
    try {
      finish();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cohort: finishing a dropped collective failed: %s\n", e.what());
    }
  }

 private:
  MPI_Request m_request;
  Tensor m_keep_a, m_keep_b;  // storage stays alive while MPI uses it
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent, const CommOptions& options)
    : Communicator(parent, core::Device::cpu(), options) {
  COHORT_MPI_CHECK(MPI_Comm_dup(parent, &m_comm));
  COHORT_MPI_CHECK(MPI_Comm_set_errhandler(m_comm, MPI_ERRORS_RETURN));
  COHORT_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &m_half_type));
  COHORT_MPI_CHECK(MPI_Type_commit(&m_half_type));
  COHORT_MPI_CHECK(MPI_Op_create(&sum_16bit<BFloat16>, /*commute=*/1, &m_bf16_sum));
  COHORT_MPI_CHECK(MPI_Op_create(&sum_16bit<Half>, /*commute=*/1, &m_f16_sum));
}

MpiCommunicator::~MpiCommunicator() {
  // During unwinding the job is about to be aborted; MPI objects may still be
  // used by abandoned requests, so they are left alone.
  if (!mpi_active() || std::uncaught_exceptions() > 0) return;
  if (m_bf16_sum != MPI_OP_NULL) COHORT_MPI_CHECK_PRINT(MPI_Op_free(&m_bf16_sum));
  if (m_f16_sum != MPI_OP_NULL) COHORT_MPI_CHECK_PRINT(MPI_Op_free(&m_f16_sum));
  if (m_half_type != MPI_DATATYPE_NULL) COHORT_MPI_CHECK_PRINT(MPI_Type_free(&m_half_type));
  if (m_comm != MPI_COMM_NULL) COHORT_MPI_CHECK_PRINT(MPI_Comm_free(&m_comm));
}

bool MpiCommunicator::supports(core::DType) const {
  return true;
}

MPI_Datatype MpiCommunicator::datatype(DType dtype) const {
  switch (dtype) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::u8:
      return MPI_UINT8_T;
    case DType::bf16:
    case DType::f16:
      return m_half_type;
  }
  COHORT_FAIL("mpi backend: unknown dtype");
}

MPI_Op MpiCommunicator::sum_op(DType dtype) const {
  if (dtype == DType::bf16) return m_bf16_sum;
  if (dtype == DType::f16) return m_f16_sum;
  return MPI_SUM;
}

std::unique_ptr<PendingCollective> MpiCommunicator::start(const Call& call) {
  const CollectiveInfo& info = call.info;
  const Tensor& in = call.input;
  const Tensor& out = call.output;
  MPI_Request request = MPI_REQUEST_NULL;
  const double inverse_size = 1.0 / size();
  std::function<void()> on_finish;

  switch (info.op) {
    case CollectiveOp::all_reduce: {
      const int n = mpi_count("all_reduce", in.numel());
      COHORT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, in.raw(), n, datatype(in.dtype()),
                                      sum_op(in.dtype()), m_comm, &request));
      if (info.reduce == ReduceOp::average)
        on_finish = [in, inverse_size] { scale_tensor(in, inverse_size); };
      break;
    }
    case CollectiveOp::reduce_scatter: {
      const int n = mpi_count("reduce_scatter", out.numel());
      // In place (output is this rank's block of input): MPI_IN_PLACE would
      // reduce into the start of the buffer, so stage the result instead.
      Tensor target = is_block_of(out, in, rank()) ? Tensor::empty(out.shape(), out.dtype()) : out;
      COHORT_MPI_CHECK(MPI_Ireduce_scatter_block(in.raw(), target.raw(), n, datatype(in.dtype()),
                                                 sum_op(in.dtype()), m_comm, &request));
      const bool average = info.reduce == ReduceOp::average;
      on_finish = [target, out, average, inverse_size] {
        if (average) scale_tensor(target, inverse_size);
        if (target.raw() != out.raw()) std::memcpy(out.raw(), target.raw(), out.nbytes());
      };
      auto pending = std::make_unique<MpiPending>(request, in, target);
      pending->on_finish = std::move(on_finish);
      return pending;
    }
    case CollectiveOp::all_gather: {
      const int n = mpi_count("all_gather", in.numel());
      const bool in_place = is_block_of(in, out, rank());
      COHORT_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.raw(), n, datatype(in.dtype()),
                                      out.raw(), n, datatype(out.dtype()), m_comm, &request));
      break;
    }
    case CollectiveOp::reduce: {
      const int n = mpi_count("reduce", in.numel());
      // No staging on any rank: root reduces in place (MPI_IN_PLACE), the others
      // send their tensor itself (receive buffer insignificant off root, MPI 3.1
      // 5.9.1), so a bucket's sub-ranges can be reduced to different roots
      // straight out of one staging buffer.
      const bool root = rank() == info.root;
      COHORT_MPI_CHECK(MPI_Ireduce(root ? MPI_IN_PLACE : in.raw(), root ? in.raw() : nullptr, n,
                                   datatype(in.dtype()), sum_op(in.dtype()), info.root, m_comm,
                                   &request));
      if (root && info.reduce == ReduceOp::average)
        on_finish = [in, inverse_size] { scale_tensor(in, inverse_size); };
      break;
    }
    case CollectiveOp::broadcast: {
      const int n = mpi_count("broadcast", in.numel());
      COHORT_MPI_CHECK(MPI_Ibcast(in.raw(), n, datatype(in.dtype()), info.root, m_comm, &request));
      break;
    }
    case CollectiveOp::barrier:
      COHORT_MPI_CHECK(MPI_Ibarrier(m_comm, &request));
      break;
  }
  auto pending = std::make_unique<MpiPending>(request, in, out);
  pending->on_finish = std::move(on_finish);
  return pending;
}

}  // namespace cohort::comm
