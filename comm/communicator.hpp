#pragma once
// Communicator: collectives over a group of ranks, asynchronous, on flat tensors.
//
//   auto comm = make_communicator(Backend::mpi, MPI_COMM_WORLD, Device::cpu());
//   WorkPtr w = comm->all_reduce(grads.flat(offset, n), ReduceOp::average, ctx.stream());
//   ... more work overlaps the collective ...
//   w->wait_stream(ctx.stream());   // device backends: ordered, host not blocked
//   w->wait();                      // or: block the host until it finished
//   comm->reduce(part, /*root=*/2, ReduceOp::average, ctx.stream());  // result on rank 2 only
//
// Tensors: any shape, always dense; a collective works on numel() elements, so
// a bucket is simply a view into a graph's flat gradient buffer
// (Tensor::flat). Results are written in place into the given tensors, which
// must stay untouched until the Work completes; the Work keeps their storage
// alive. Every rank must issue the same collectives in the same order.
//
// Backends: MPI on host tensors (CPU ranks, CI), NCCL on device tensors of the
// communicator's GPU (comm/cuda). `stream` is the compute stream that produced
// the data: a device backend runs the collective on its own stream, ordered
// after the work already queued on `stream` (an event), and host backends
// ignore it.
//
// Every collective gets a sequence number (1, 2, ... per communicator), a
// deadline watched by the process's Watchdog (CommOptions::timeout_s), an
// optional cross-rank fingerprint check (CommOptions::check) and, for tests,
// the faults of CommOptions::faults. Calls on one communicator come from one
// thread at a time.
#include <mpi.h>

#include <array>
#include <functional>
#include <memory>
#include <string>

#include "comm/collective.hpp"
#include "comm/comm_options.hpp"
#include "comm/watchdog.hpp"
#include "core/device.hpp"
#include "core/storage.hpp"
#include "core/tensor.hpp"

namespace cohort::comm {

// A backend's side of one collective in flight.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // Has it finished? Never blocks.
  virtual bool poll() = 0;
  // Blocks the host until it finished; throws on failure.
  virtual void block() = 0;
  // Orders later work on `stream` after the collective. Returns true when that
  // also completed it (host backends simply block).
  virtual bool order_stream(core::StreamHandle stream) {
    block();
    return true;
  }
  // Runs once after completion was observed (e.g. MPI's average = sum / size).
  virtual void finish() {}
  // The Work is dropped before completion was observed (and no exception is
  // unwinding): make the buffers safe to release, without blocking if possible.
  virtual void release() noexcept = 0;
  // A probe the watchdog may call from its thread (empty: none; see watchdog.hpp).
  virtual std::function<ProbeResult()> watchdog_probe() { return {}; }
};

// Handle on one asynchronous collective.
class Work {
 public:
  Work(CollectiveInfo info, std::unique_ptr<PendingCollective> pending,
       std::shared_ptr<Watch> watch);
  // Dropping an unfinished Work waits for it (host backends) or orders the
  // issuing stream after it (device backends) so the buffers stay valid;
  // during exception unwinding it abandons the collective instead (the buffers
  // are leaked: the job is ending and must not block here).
  ~Work();
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  const CollectiveInfo& info() const { return m_info; }
  // Polls without blocking; true once the collective completed.
  bool test();
  // Blocks the host until the collective completed; throws on failure.
  void wait();
  // Device backends: later work on `stream` waits for the collective (the
  // host does not). Host backends: wait().
  void wait_stream(core::StreamHandle stream);
  bool completed() const { return m_completed; }

 private:
  void complete();

  CollectiveInfo m_info;
  std::unique_ptr<PendingCollective> m_pending;
  std::shared_ptr<Watch> m_watch;
  bool m_completed = false;
};
using WorkPtr = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return m_rank; }
  int size() const { return m_size; }
  // Where tensors must live: cpu for MPI, the rank's GPU for NCCL.
  core::Device device() const { return m_device; }
  virtual const char* backend_name() const = 0;
  virtual bool supports(core::DType dtype) const = 0;
  const CommOptions& options() const { return m_options; }
  // Sequence number of the last collective issued (0 before the first).
  uint64_t sequence() const { return m_sequence; }
  // What this rank issued of one kind of collective since construction (a
  // collective skipped by an injected fault is not counted). `bytes` sums the
  // buffer sizes as CollectiveInfo::count measures them (nccl-tests' "size"):
  // the payload, not the bytes an algorithm puts on the wire.
  struct Totals {
    int64_t calls = 0;
    int64_t bytes = 0;
  };
  Totals totals(CollectiveOp op) const { return m_totals[static_cast<size_t>(op)]; }

  // In place: every rank ends with the element-wise sum (or mean) of all ranks'
  // tensors. Average needs a floating dtype.
  WorkPtr all_reduce(const core::Tensor& tensor, ReduceOp op = ReduceOp::sum,
                     core::StreamHandle stream = nullptr);
  // input.numel() == size() * output.numel(); rank r gets the reduction of
  // every rank's block r of input. In place when output is this rank's block of input.
  WorkPtr reduce_scatter(const core::Tensor& input, const core::Tensor& output,
                         ReduceOp op = ReduceOp::sum, core::StreamHandle stream = nullptr);
  // output.numel() == size() * input.numel(); block r of output is rank r's
  // input. In place when input is this rank's block of output.
  WorkPtr all_gather(const core::Tensor& input, const core::Tensor& output,
                     core::StreamHandle stream = nullptr);
  // In place on `root`: root's tensor ends as the element-wise sum (or mean) of
  // all ranks' tensors. The other ranks only contribute: their tensors' contents
  // are unspecified once the Work completed (a backend may use them as scratch;
  // MPI and NCCL happen to leave them unchanged). About half the traffic of
  // all_reduce when only one rank needs the result (ZeRO-2/3 gradient buckets).
  WorkPtr reduce(const core::Tensor& tensor, int root, ReduceOp op = ReduceOp::sum,
                 core::StreamHandle stream = nullptr);
  // In place: every rank ends with root's tensor.
  WorkPtr broadcast(const core::Tensor& tensor, int root, core::StreamHandle stream = nullptr);
  WorkPtr barrier(core::StreamHandle stream = nullptr);

 protected:
  // Collective over the ranks of `parent` (which is not used for traffic: check
  // mode duplicates it, and backends make their own). Collective over `parent`.
  Communicator(MPI_Comm parent, core::Device device, CommOptions options);

  struct Call {
    CollectiveInfo info;
    core::Tensor input;   // all_reduce/reduce/broadcast: the tensor itself; barrier: undefined
    core::Tensor output;  // reduce_scatter, all_gather; otherwise == input
    core::StreamHandle stream = nullptr;
  };
  // Starts a validated collective. Returns its pending state, or nullptr when
  // it already completed.
  virtual std::unique_ptr<PendingCollective> start(const Call& call) = 0;

  Watchdog& watchdog() const { return *m_watchdog; }

  // Block `rank` of `whole` when `part` is exactly that block (in-place forms).
  static bool is_block_of(const core::Tensor& part, const core::Tensor& whole, int rank);

 private:
  WorkPtr issue(Call call);
  void check_tensor(const char* what, const core::Tensor& t) const;
  // Returns true when the collective must be skipped (fault "skip").
  bool inject_fault(const CollectiveInfo& info) const;
  void check_fingerprint(const CollectiveInfo& info);

  int m_rank = 0, m_size = 1;
  core::Device m_device;
  CommOptions m_options;
  uint64_t m_sequence = 0;
  std::array<Totals, kCollectiveOpCount> m_totals{};
  MPI_Comm m_check_comm = MPI_COMM_NULL;
  std::shared_ptr<Watchdog> m_watchdog;
};

enum class Backend { mpi, nccl };
Backend parse_backend(const std::string& text);  // "mpi", "nccl"
const char* backend_name(Backend backend);
// True when this build has the NCCL backend.
bool nccl_compiled();
// The loaded libraries' own version text (callable before MPI_Init): MPI's
// library version (e.g. "Open MPI v4.1.4, ..."), NCCL's ("2.28.3"; empty in a
// CPU-only build).
std::string mpi_library_version();
std::string nccl_version();

// A communicator over the ranks of `parent` (collective over `parent`). MPI
// needs device cpu; NCCL the rank's GPU (MpiSession::device()).
std::unique_ptr<Communicator> make_communicator(
    Backend backend, MPI_Comm parent, core::Device device,
    const CommOptions& options = CommOptions::from_env());

}  // namespace cohort::comm
