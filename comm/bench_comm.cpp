#include "comm/bench_comm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include "comm/communicator.hpp"
#include "comm/mpi_check.hpp"
#include "comm/mpi_session.hpp"
#include "core/context.hpp"
#include "core/error.hpp"

namespace cohort::comm {
namespace {

using core::DType;
using core::Tensor;

// nccl-tests' names for the type column.
const char* nccl_tests_type_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "float";
    case DType::f16:
      return "half";
    case DType::bf16:
      return "bfloat16";
    case DType::f64:
      return "double";
    case DType::i32:
      return "int32";
    case DType::i64:
      return "int64";
    case DType::u8:
      return "uint8";
  }
  return "?";
}

// Mean seconds per collective on this rank, after warm-up.
double time_collective(Communicator& comm, CollectiveOp op, const Tensor& a, const Tensor& b,
                       const CommBenchOptions& options, core::Context& ctx) {
  const auto issue = [&]() -> WorkPtr {
    switch (op) {
      case CollectiveOp::all_reduce:
        return comm.all_reduce(a, ReduceOp::sum, ctx.stream());
      case CollectiveOp::reduce_scatter:
        return comm.reduce_scatter(a, b, ReduceOp::sum, ctx.stream());
      case CollectiveOp::all_gather:
        return comm.all_gather(a, b, ctx.stream());
      case CollectiveOp::reduce:
        return comm.reduce(a, 0, ReduceOp::sum, ctx.stream());
      case CollectiveOp::broadcast:
        return comm.broadcast(a, 0, ctx.stream());
      case CollectiveOp::barrier:
        return comm.barrier(ctx.stream());
    }
    COHORT_FAIL("bench: unknown collective");
  };
  // Host backends complete each collective before the next (in place on one
  // buffer); device backends queue them all on their stream, as nccl-tests does.
  const bool queue = comm.device().is_cuda();
  const auto run = [&](int iterations) {
    std::vector<WorkPtr> works;
    for (int i = 0; i < iterations; ++i) {
      WorkPtr w = issue();
      if (queue)
        works.push_back(std::move(w));
      else
        w->wait();
    }
    for (const WorkPtr& w : works)
      w->wait();
  };
  run(options.warmup_iters);
  comm.barrier(ctx.stream())->wait();
  const auto t0 = std::chrono::steady_clock::now();
  run(options.iters);
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(t1 - t0).count() / std::max(options.iters, 1);
}

const char* bus_factor_text(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::all_reduce:
      return "2(n-1)/n";
    case CollectiveOp::reduce_scatter:
    case CollectiveOp::all_gather:
      return "(n-1)/n";
    default:
      return "1";
  }
}

void print_header(std::FILE* out, CollectiveOp op) {
  fmt::print(out, "#\n# {} (busbw = algbw * {})\n", op_name(op), bus_factor_text(op));
  fmt::print(out, "# {:>10}  {:>12}  {:>8}  {:>6}  {:>8}  {:>6}  {:>6}\n", "size", "count", "type",
             "redop", "time", "algbw", "busbw");
  fmt::print(out, "# {:>10}  {:>12}  {:>8}  {:>6}  {:>8}  {:>6}  {:>6}\n", "(B)", "(elements)", "",
             "", "(us)", "(GB/s)", "(GB/s)");
}

}  // namespace

double bus_bandwidth_factor(CollectiveOp op, int ranks) {
  const double n = ranks;
  switch (op) {
    case CollectiveOp::all_reduce:
      return 2.0 * (n - 1) / n;
    case CollectiveOp::reduce_scatter:
    case CollectiveOp::all_gather:
      return (n - 1) / n;
    default:
      return 1.0;
  }
}

std::vector<CommBenchRow> run_comm_bench(const CommBenchOptions& options) {
  COHORT_CHECK(
      options.min_bytes > 0 && options.min_bytes <= options.max_bytes && options.iters > 0 &&
          options.warmup_iters >= 0,
      fmt::format("bench comm: need 0 < min_bytes ({}) <= max_bytes ({}), iters ({}) > 0 "
                  "and warmup ({}) >= 0",
                  options.min_bytes, options.max_bytes, options.iters, options.warmup_iters));
  std::optional<MpiSession> own_session;
  if (MpiSession::current() == nullptr && !mpi_active()) own_session.emplace();
  const Backend backend = parse_backend(options.backend);
  core::Device device = core::Device::cpu();
  if (backend == Backend::nccl) {
    MpiSession* session = MpiSession::current();
    COHORT_CHECK(session != nullptr && session->device().is_cuda(),
                 "bench comm: the nccl backend needs a GPU per rank (this rank has none)");
    device = session->device();
  }
  core::Context ctx(device);
  CommOptions comm_options = CommOptions::from_env();
  comm_options.faults.clear();
  auto comm = make_communicator(backend, MPI_COMM_WORLD, device, comm_options);
  const int n = comm->size();
  const int64_t elem = static_cast<int64_t>(core::dtype_size(options.dtype));
  std::FILE* out = comm->rank() == 0 ? options.out : nullptr;
  if (out)
    fmt::print(out,
               "# cohort bench comm: backend {}, {} ranks, type {}, {} warm-up + {} timed "
               "iterations per size\n",
               options.backend, n, nccl_tests_type_name(options.dtype), options.warmup_iters,
               options.iters);

  std::vector<CommBenchRow> rows;
  for (CollectiveOp op : options.ops) {
    if (out) print_header(out, op);
    double busbw_sum = 0;
    int busbw_rows = 0;
    for (int64_t bytes = options.min_bytes; bytes <= options.max_bytes; bytes *= 2) {
      int64_t count = bytes / elem;
      if (op == CollectiveOp::reduce_scatter || op == CollectiveOp::all_gather)
        count = count / n * n;
      if (count == 0) continue;
      Tensor a, b;
      if (op == CollectiveOp::all_gather) {
        a = Tensor::zeros(core::Shape{count / n}, options.dtype, device, ctx.stream());
        b = Tensor::zeros(core::Shape{count}, options.dtype, device, ctx.stream());
      } else {
        a = Tensor::zeros(core::Shape{count}, options.dtype, device, ctx.stream());
        if (op == CollectiveOp::reduce_scatter)
          b = Tensor::zeros(core::Shape{count / n}, options.dtype, device, ctx.stream());
      }
      double seconds = time_collective(*comm, op, a, b, options, ctx);
      COHORT_MPI_CHECK(
          MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
      CommBenchRow row;
      row.op = op;
      row.count = count;
      row.bytes = count * elem;
      row.time_us = seconds * 1e6;
      row.algbw_gbs = static_cast<double>(row.bytes) / seconds / 1e9;
      row.busbw_gbs = row.algbw_gbs * bus_bandwidth_factor(op, n);
      rows.push_back(row);
      busbw_sum += row.busbw_gbs;
      ++busbw_rows;
      if (out) {
        fmt::print(out, "  {:>10}  {:>12}  {:>8}  {:>6}  {:>8.2f}  {:>6.2f}  {:>6.2f}\n", row.bytes,
                   row.count, nccl_tests_type_name(options.dtype),
                   op == CollectiveOp::all_gather ? "none" : "sum", row.time_us, row.algbw_gbs,
                   row.busbw_gbs);
        std::fflush(out);
      }
    }
    if (out && busbw_rows > 0)
      fmt::print(out, "# Avg bus bandwidth    : {:.3f}\n", busbw_sum / busbw_rows);
  }
  ctx.synchronize();
  return rows;
}

}  // namespace cohort::comm
