// NCCL backend. Each communicator owns a non-blocking CUDA stream on which its
// collectives run; a collective first waits (cudaStreamWaitEvent) for an event
// recorded on the caller's compute stream, so it sees everything the caller
// queued before, and records a "done" event that Work::wait (host) and
// Work::wait_stream (another stream) and the watchdog's probe use.
// The raw ncclComm_t is shared with the watchdog probe (ncclCommGetAsyncError)
// and the abort hook (ncclCommAbort) behind a mutex, so destroying the
// communicator cannot race either of them. Enqueues (start) use it outside the
// mutex and are counted instead; the abort hook waits (bounded) for them, see
// SharedComm.
#include "comm/cuda/nccl_communicator.hpp"

#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "comm/abort.hpp"
#include "comm/mpi_check.hpp"
#include "core/cuda/check.hpp"

namespace cohort::comm {
namespace {

using core::DType;
using core::Tensor;

// Makes `device` current for the scope and restores the caller's device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    COHORT_CUDA_CHECK(cudaGetDevice(&m_previous));
    if (m_previous != device) COHORT_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { COHORT_CUDA_CHECK_PRINT(cudaSetDevice(m_previous)); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int m_previous = 0;
};

class Event {
 public:
  Event() { COHORT_CUDA_CHECK(cudaEventCreateWithFlags(&m_event, cudaEventDisableTiming)); }
  ~Event() { COHORT_CUDA_CHECK_PRINT(cudaEventDestroy(m_event)); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return m_event; }

 private:
  cudaEvent_t m_event = nullptr;
};

// The communicator and the enqueues using it right now.
//
// start() cannot hold the mutex across its NCCL call: NCCL connects lazily,
// inside the first collective that needs a connection, and that call can block
// on a peer that never comes; the "starting" watch (Communicator::issue) then
// aborts the job, and the abort hook must be able to take the mutex and call
// ncclCommAbort, which is what unblocks the call. But copying the pointer under
// the mutex and calling NCCL after releasing it lets the hook free the
// communicator in between (a use after free on the main thread). So start()
// counts itself in `enqueues` under the mutex (refusing once `aborting` is set),
// and the hook sets `aborting`, then waits for the count to drain before
// ncclCommAbort: an enqueue that is merely running (usually microseconds) is not
// cut off, while one that is stuck (exactly what the abort must break) is
// aborted after kAbortDrainWait anyway; it may then still touch the freed
// communicator, but the process ends within abort_job's bound regardless. The wait fits in
// abort_job's 5 s bound on all hooks (comm/abort.cpp) with room for ncclCommAbort itself and a
// second communicator's hook.
struct SharedComm {
  std::mutex mutex;
  std::condition_variable drained;  // `enqueues` reached 0
  ncclComm_t comm = nullptr;        // null once destroyed or aborted
  int enqueues = 0;                 // start() calls between acquire and release
  bool aborting = false;            // the abort hook has begun: no new enqueue
};

constexpr auto kAbortDrainWait = std::chrono::seconds(1);

// Counts one enqueue for its lifetime, holding the communicator for it.
class EnqueueGuard {
 public:
  EnqueueGuard(SharedComm& shared, const CollectiveInfo& info) : m_shared(shared) {
    std::lock_guard lock(shared.mutex);
    if (shared.aborting || shared.comm == nullptr)
      COHORT_FAIL(fmt::format("nccl backend: cannot start {}: the communicator was {}", info.str(),
                              shared.aborting ? "aborted" : "destroyed"));
    m_comm = shared.comm;
    ++shared.enqueues;
  }
  ~EnqueueGuard() {
    std::lock_guard lock(m_shared.mutex);
    if (--m_shared.enqueues == 0) m_shared.drained.notify_all();
  }
  EnqueueGuard(const EnqueueGuard&) = delete;
  EnqueueGuard& operator=(const EnqueueGuard&) = delete;
  ncclComm_t comm() const { return m_comm; }

 private:
  SharedComm& m_shared;
  ncclComm_t m_comm = nullptr;
};

// The abort hook: no new enqueue, the running ones drained (bounded), then abort.
void abort_shared(SharedComm& shared) {
  ncclComm_t comm = nullptr;
  {
    std::unique_lock lock(shared.mutex);
    shared.aborting = true;
    if (!shared.drained.wait_for(lock, kAbortDrainWait, [&] { return shared.enqueues == 0; }))
      std::fprintf(stderr,
                   "cohort: %d NCCL enqueue(s) still running after %lld s; aborting the "
                   "communicator under them\n",
                   shared.enqueues, static_cast<long long>(kAbortDrainWait.count()));
    // Taken under the mutex: no probe (async_error) is inside NCCL with it, and
    // none can get it afterwards.
    comm = shared.comm;
    shared.comm = nullptr;
  }
  if (comm) ncclCommAbort(comm);
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::f16:
      return ncclFloat16;
    case DType::bf16:
      return ncclBfloat16;
    case DType::f64:
      return ncclFloat64;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    case DType::u8:
      return ncclUint8;
  }
  COHORT_FAIL("nccl backend: unknown dtype");
}

ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::sum ? ncclSum : ncclAvg;
}

// Empty when the communicator has no asynchronous error.
std::string async_error(SharedComm& shared) {
  std::lock_guard lock(shared.mutex);
  if (shared.comm == nullptr) return "the NCCL communicator was destroyed or aborted";
  ncclResult_t state = ncclSuccess;
  if (ncclCommGetAsyncError(shared.comm, &state) != ncclSuccess)
    return "ncclCommGetAsyncError failed";
  if (state == ncclSuccess || state == ncclInProgress) return {};
  return fmt::format("NCCL asynchronous error {} ({})", static_cast<int>(state),
                     ncclGetErrorString(state));
}

bool event_done(cudaEvent_t event) {
  const cudaError_t status = cudaEventQuery(event);
  if (status == cudaSuccess) return true;
  if (status == cudaErrorNotReady) return false;
  (void)cudaGetLastError();
  throw_library_error(Library::cuda, status, "cudaEventQuery(done)", __FILE__, __LINE__);
}

class NcclPending final : public PendingCollective {
 public:
  NcclPending(std::shared_ptr<Event> done, std::shared_ptr<SharedComm> shared,
              cudaStream_t issue_stream, int device, Tensor keep_a, Tensor keep_b)
      : m_done(std::move(done)),
        m_shared(std::move(shared)),
        m_issue_stream(issue_stream),
        m_device(device),
        m_keep_a(std::move(keep_a)),
        m_keep_b(std::move(keep_b)) {}

  bool poll() override { return event_done(m_done->get()); }

  void block() override {
    // Polling (not cudaEventSynchronize) so that an NCCL failure surfaces here
    // as an error instead of a wait that never ends.
    while (!event_done(m_done->get())) {
      const std::string error = async_error(*m_shared);
      COHORT_CHECK(error.empty(), "nccl collective failed: " + error);
      std::this_thread::yield();
    }
  }

  bool order_stream(core::StreamHandle stream) override {
    COHORT_CUDA_CHECK(cudaStreamWaitEvent(stream, m_done->get(), 0));
    return false;
  }

  void release() noexcept override {
    // The tensors were allocated on the issuing stream (stream-ordered pool);
    // ordering that stream after the collective makes their release safe.
    COHORT_CUDA_CHECK_PRINT(cudaStreamWaitEvent(m_issue_stream, m_done->get(), 0));
    m_keep_a = Tensor();
    m_keep_b = Tensor();
  }

  std::function<ProbeResult()> watchdog_probe() override {
    // The communicator's GPU, set on the watchdog thread: its current device
    // would otherwise be 0, and its first CUDA call would create a context on
    // GPU 0 in every rank of a multi-GPU node.
    return [done = m_done, shared = m_shared, device = m_device]() {
      COHORT_CUDA_CHECK_PRINT(cudaSetDevice(device));
      ProbeResult result;
      result.done = event_done(done->get());
      if (!result.done) {
        result.error = async_error(*shared);
        // A communicator destroyed after its last collective completed (normal
        // shutdown, between the two queries above) is no failure.
        if (!result.error.empty() && event_done(done->get())) {
          result.done = true;
          result.error.clear();
        }
      }
      return result;
    };
  }

 private:
  std::shared_ptr<Event> m_done;
  std::shared_ptr<SharedComm> m_shared;
  cudaStream_t m_issue_stream;
  int m_device;
  Tensor m_keep_a, m_keep_b;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm parent, core::Device device, const CommOptions& options)
      : Communicator(parent, device, options), m_shared(std::make_shared<SharedComm>()) {
    DeviceGuard guard(device.index);
    ncclUniqueId id{};
    if (rank() == 0) COHORT_NCCL_CHECK(ncclGetUniqueId(&id));
    COHORT_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, parent));
    {
      // Joining waits for every rank; a rank that never comes must not hang it.
      const std::shared_ptr<Watch> watch = watchdog().watch(
          fmt::format("NCCL communicator initialisation ({} ranks)", size()), options.timeout_s);
      ncclComm_t comm = nullptr;
      const ncclResult_t status = ncclCommInitRank(&comm, size(), id, rank());
      watch->finish();
      COHORT_NCCL_CHECK(status);
      m_shared->comm = comm;
    }
    m_abort_hook = add_abort_hook([shared = m_shared] { abort_shared(*shared); });
    COHORT_CUDA_CHECK(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking));
    m_barrier_scratch = Tensor::zeros(core::Shape{1}, DType::i32, device, m_stream);
  }

  ~NcclCommunicator() override {
    remove_abort_hook(m_abort_hook);
    if (std::uncaught_exceptions() > 0) return;  // the job is aborting; do not wait on the GPU
    try {
      DeviceGuard guard(device().index);
      m_barrier_scratch = Tensor();  // freed on m_stream, before the stream goes
      COHORT_CUDA_CHECK_PRINT(cudaStreamSynchronize(m_stream));
      ncclComm_t comm = nullptr;
      {
        std::lock_guard lock(m_shared->mutex);
        comm = m_shared->comm;
        m_shared->comm = nullptr;
      }
      if (comm) COHORT_NCCL_CHECK_PRINT(ncclCommDestroy(comm));
      COHORT_CUDA_CHECK_PRINT(cudaStreamDestroy(m_stream));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cohort: destroying the NCCL communicator: %s\n", e.what());
    }
  }

  const char* backend_name() const override { return "nccl"; }
  bool supports(DType) const override { return true; }

 protected:
  std::unique_ptr<PendingCollective> start(const Call& call) override {
    DeviceGuard guard(device().index);
    // Held until the NCCL call below has returned (see SharedComm).
    const EnqueueGuard enqueue(*m_shared, call.info);
    const ncclComm_t comm = enqueue.comm();
    {
      Event ready;
      COHORT_CUDA_CHECK(cudaEventRecord(ready.get(), call.stream));
      COHORT_CUDA_CHECK(cudaStreamWaitEvent(m_stream, ready.get(), 0));
    }
    const Tensor& in = call.input;
    const Tensor& out = call.output;
    const CollectiveInfo& info = call.info;
    switch (info.op) {
      case CollectiveOp::all_reduce:
        COHORT_NCCL_CHECK(ncclAllReduce(in.raw(), in.raw(), static_cast<size_t>(in.numel()),
                                        nccl_type(in.dtype()), nccl_op(info.reduce), comm,
                                        m_stream));
        break;
      case CollectiveOp::reduce_scatter:
        // NCCL's in-place form is exactly ours: output is this rank's block of input.
        COHORT_NCCL_CHECK(ncclReduceScatter(in.raw(), out.raw(), static_cast<size_t>(out.numel()),
                                            nccl_type(in.dtype()), nccl_op(info.reduce), comm,
                                            m_stream));
        break;
      case CollectiveOp::all_gather:
        COHORT_NCCL_CHECK(ncclAllGather(in.raw(), out.raw(), static_cast<size_t>(in.numel()),
                                        nccl_type(in.dtype()), comm, m_stream));
        break;
      case CollectiveOp::reduce:
        // In place: the receive buffer is only written on root; ncclAvg divides there.
        COHORT_NCCL_CHECK(ncclReduce(in.raw(), in.raw(), static_cast<size_t>(in.numel()),
                                     nccl_type(in.dtype()), nccl_op(info.reduce), info.root, comm,
                                     m_stream));
        break;
      case CollectiveOp::broadcast:
        COHORT_NCCL_CHECK(ncclBroadcast(in.raw(), in.raw(), static_cast<size_t>(in.numel()),
                                        nccl_type(in.dtype()), info.root, comm, m_stream));
        break;
      case CollectiveOp::barrier:
        // NCCL has no barrier; a one-element all-reduce synchronises the same way.
        COHORT_NCCL_CHECK(ncclAllReduce(m_barrier_scratch.raw(), m_barrier_scratch.raw(), 1,
                                        ncclInt32, ncclSum, comm, m_stream));
        break;
    }
    auto done = std::make_shared<Event>();
    COHORT_CUDA_CHECK(cudaEventRecord(done->get(), m_stream));
    return std::make_unique<NcclPending>(std::move(done), m_shared, call.stream, device().index, in,
                                         out);
  }

 private:
  std::shared_ptr<SharedComm> m_shared;
  int m_abort_hook = 0;
  cudaStream_t m_stream = nullptr;
  Tensor m_barrier_scratch;
};

}  // namespace

std::string nccl_library_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  // NCCL 2.9 and later: major * 10000 + minor * 100 + patch.
  return fmt::format("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100);
}

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm parent, core::Device device,
                                                     const CommOptions& options) {
  return std::make_unique<NcclCommunicator>(parent, device, options);
}

}  // namespace cohort::comm
