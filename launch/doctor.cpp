#include "launch/doctor.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "core/tensor.hpp"
#include "core/versions.hpp"

namespace cohort::launch {
namespace {

using core::DType;
using core::Shape;
using core::Tensor;

struct Check {
  std::string name;
  bool ok = false;
  std::string detail;
};

std::string build_text() {
#ifdef COHORT_WITH_CUDA
  const char* backend = "CUDA backend on";
#else
  const char* backend = "CUDA backend off (CPU-only build)";
#endif
  return fmt::format("cohort {}, {}", COHORT_VERSION, backend);
}

// Library versions and GPUs, as rank 0 (or the lone process) sees them.
std::string environment_text() {
  std::string text = fmt::format("  build:    {}\n", build_text());
  text += fmt::format("  MPI:      {}\n", comm::mpi_library_version());
  text += fmt::format("  HDF5:     {}\n", core::hdf5_version());
  text += fmt::format("  BLAS:     {}\n", core::blas_description());
  const core::CudaVersions cuda = core::cuda_versions();
  if (!cuda.runtime.empty())
    text += fmt::format("  CUDA:     driver {}, runtime {}; cuDNN {}; cuBLAS {}; NCCL {}\n",
                        cuda.driver, cuda.runtime, cuda.cudnn, cuda.cublas, comm::nccl_version());
  const std::vector<core::GpuDescription> gpus = core::describe_gpus();
  if (gpus.empty()) text += "  GPUs:     none visible\n";
  for (const core::GpuDescription& g : gpus)
    text += fmt::format("  GPU {}:    {}, {:.1f} GiB, sm_{}{}, UUID {}\n", g.index, g.name,
                        g.memory_gib, g.major, g.minor, g.uuid);
  return text;
}

// A small op on `device`, read back: the GPU computes and the result arrives.
Check device_check(core::Device device) {
  Check c{fmt::format("a small op on {}", device.str()), false, ""};
  try {
    core::Context ctx(device);
    Tensor x = Tensor::empty(Shape{1 << 20}, DType::f32, device, ctx.stream());
    core::ops::fill(ctx, x, 0.5);
    const double sum = core::ops::sum(ctx, x).item(ctx.stream());
    c.ok = sum == 0.5 * (1 << 20);
    c.detail = c.ok ? "ok" : fmt::format("FAILED: the sum of 2^20 halves is {}, not 524288", sum);
  } catch (const std::exception& e) {
    c.detail = fmt::format("FAILED: {}", e.what());
  }
  return c;
}

// An all-reduce whose sum is known (every rank adds rank + 1), then the mean time
// of `repeats` all-reduces of `bytes`. Collective: every rank issues the same
// collectives whatever it finds (a wrong sum is reported, not returned early
// from), and a failing call throws, which ends every rank (run_rank_main)
// instead of leaving the others waiting.
Check all_reduce_check(comm::Communicator& comm, core::Device device, const std::string& what,
                       size_t bytes, int repeats) {
  Check c{fmt::format("all-reduce over {}", what), false, ""};
  core::Context ctx(device);
  const int world = comm.size();
  Tensor x = Tensor::from_vector({static_cast<double>(comm.rank() + 1)}, Shape{1}, DType::f32)
                 .to(device, ctx.stream());
  comm.all_reduce(x, comm::ReduceOp::sum, ctx.stream())->wait();
  const double got = x.item(ctx.stream()), expected = world * (world + 1) / 2.0;
  const auto n = static_cast<int64_t>(bytes / sizeof(float));
  Tensor big = Tensor::zeros(Shape{n}, DType::f32, device, ctx.stream());
  comm.all_reduce(big, comm::ReduceOp::sum, ctx.stream())->wait();  // warm-up
  comm.barrier(ctx.stream())->wait();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i)
    comm.all_reduce(big, comm::ReduceOp::sum, ctx.stream())->wait();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
  c.ok = got == expected;
  if (!c.ok) {
    c.detail = fmt::format("FAILED: the sum of rank + 1 over {} ranks is {}, not {}", world, got,
                           expected);
    return c;
  }
  if (world == 1) {  // nothing crosses a link: a time, but no bandwidth
    c.detail = fmt::format("ok (1 rank; {} MiB in {:.3f} ms)", bytes >> 20, seconds * 1e3);
    return c;
  }
  // nccl-tests' bus bandwidth: what each link carries in a ring all-reduce.
  const double bus = 2.0 * (world - 1) / world;
  c.detail = fmt::format("ok ({} ranks; {} MiB in {:.3f} ms, bus bandwidth {:.2f} GB/s)", world,
                         bytes >> 20, seconds * 1e3,
                         seconds > 0 ? bus * static_cast<double>(bytes) / seconds / 1e9 : 0.0);
  return c;
}

int report(const std::string& text, const std::vector<Check>& checks) {
  int failed = 0;
  std::string out = "cohort doctor\n" + text;
  for (const Check& c : checks) {
    out += fmt::format("  check:    {}: {}\n", c.name, c.detail);
    failed += c.ok ? 0 : 1;
  }
  out += failed == 0 ? "  result:   every check passed\n"
                     : fmt::format("  result:   {} check(s) FAILED\n", failed);
  fmt::print("{}", out);
  std::fflush(stdout);
  return failed == 0 ? 0 : 1;
}

// Every rank's line (host, local rank, device), gathered on rank 0.
std::vector<std::string> rank_lines(const comm::MpiSession& s) {
  constexpr int kLine = 256;
  std::string mine = fmt::format("rank {:>3} on {} (local rank {} of {}): {}", s.rank(), s.host(),
                                 s.local_rank(), s.local_size(), s.device().str());
  if (s.device().is_cuda()) {
    for (const core::GpuDescription& g : core::describe_gpus())
      if (g.index == s.device().index) mine += fmt::format(", {} {}", g.name, g.uuid.substr(0, 8));
  }
  mine.resize(kLine - 1, ' ');
  std::vector<char> all(s.rank() == 0 ? static_cast<size_t>(kLine) * s.size() : 0);
  MPI_Gather(mine.c_str(), kLine, MPI_CHAR, all.data(), kLine, MPI_CHAR, 0, MPI_COMM_WORLD);
  std::vector<std::string> lines;
  for (int r = 0; s.rank() == 0 && r < s.size(); ++r) {
    std::string line(all.data() + static_cast<size_t>(r) * kLine);
    line.erase(line.find_last_not_of(' ') + 1);
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

int run_doctor(core::Device device) {
  std::vector<Check> checks;
  if (device.is_cuda()) checks.push_back(device_check(device));
  return report(environment_text() + "  ranks:    1 (not started by a launcher)\n", checks);
}

int run_doctor(comm::MpiSession& session) {
  const core::Device device = session.device();
  std::vector<Check> checks;
  if (device.is_cuda()) checks.push_back(device_check(device));
  // Collectives run on every rank, in the same order, whatever the checks before
  // gave: a rank that skipped one would hang the others.
  {
    auto host = comm::make_communicator(comm::Backend::mpi, MPI_COMM_WORLD, core::Device::cpu());
    checks.push_back(all_reduce_check(*host, core::Device::cpu(), "MPI (host memory)", 8 << 20, 5));
  }
  // NCCL only when every rank has a working GPU: the communicator's setup is
  // collective, so a rank on the CPU (a node whose driver is missing) or with a
  // failed device check would leave the others waiting in it. The ranks agree
  // first, over MPI, which already worked above.
  const int on_gpu = device.is_cuda() ? 1 : 0;
  const int gpu_ok = on_gpu == 1 && checks.front().ok ? 1 : 0;
  int gpu_ranks = 0, ok_ranks = 0;
  MPI_Allreduce(&on_gpu, &gpu_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(&gpu_ok, &ok_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (ok_ranks == session.size()) {
    auto nccl = comm::make_communicator(comm::Backend::nccl, MPI_COMM_WORLD, device);
    checks.push_back(all_reduce_check(*nccl, device, "NCCL (device memory)", 256 << 20, 10));
  } else if (gpu_ranks > 0 && session.rank() == 0) {
    checks.push_back({"all-reduce over NCCL (device memory)", false,
                      fmt::format("FAILED: not run: {} of {} ranks are on a GPU, {} of them with a "
                                  "working one (every rank needs one; see the rank lines)",
                                  gpu_ranks, session.size(), ok_ranks)});
  }
  // A rank's failed check fails the job's report.
  int mine_failed = 0;
  for (const Check& c : checks)
    mine_failed += c.ok ? 0 : 1;
  int failed_ranks = 0;
  const int flag = mine_failed > 0 ? 1 : 0;
  MPI_Allreduce(&flag, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  const std::vector<std::string> lines = rank_lines(session);
  if (session.rank() != 0) {
    for (const Check& c : checks)
      if (!c.ok)
        std::fprintf(stderr, "cohort doctor: rank %d: %s: %s\n", session.rank(), c.name.c_str(),
                     c.detail.c_str());
    return mine_failed > 0 ? 1 : 0;
  }
  std::string text = environment_text();
  const char* job = std::getenv("SLURM_JOB_ID");
  text += fmt::format("  ranks:    {} ({}; MPI thread level {})\n", session.size(),
                      job != nullptr ? fmt::format("Slurm job {}", job) : std::string("launcher"),
                      comm::thread_level_name(session.thread_level()));
  for (const std::string& line : lines)
    text += fmt::format("            {}\n", line);
  if (failed_ranks > 0)
    checks.push_back(
        {"every rank's own checks", false,
         fmt::format("FAILED on {} of {} ranks (see their stderr)", failed_ranks, session.size())});
  return report(text, checks);
}

}  // namespace cohort::launch
