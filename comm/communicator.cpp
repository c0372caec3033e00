#include "comm/communicator.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

#include "comm/mpi_check.hpp"
#include "core/error.hpp"

namespace cohort::comm {

// ---- Work ----------------------------------------------------------------------------

Work::Work(CollectiveInfo info, std::unique_ptr<PendingCollective> pending,
           std::shared_ptr<Watch> watch)
    : m_info(info), m_pending(std::move(pending)), m_watch(std::move(watch)) {
  if (!m_pending) complete();
}

Work::~Work() {
  if (m_completed) return;
  if (std::uncaught_exceptions() > 0) {
    // The job is going down (run_rank_main aborts it); blocking here could
    // hang, and freeing buffers a collective may still write is worse.
    (void)m_pending.release();
    if (m_watch) m_watch->finish();
    return;
  }
  m_pending->release();
  // A probe (device backends) can still see the collective finish or expire;
  // without one nobody could, so the watch ends here.
  if (m_watch && !m_pending->watchdog_probe()) m_watch->finish();
}

void Work::complete() {
  if (m_pending) m_pending->finish();
  m_pending.reset();
  if (m_watch) m_watch->finish();
  m_completed = true;
}

bool Work::test() {
  if (m_completed) return true;
  if (!m_pending->poll()) return false;
  complete();
  return true;
}

void Work::wait() {
  if (m_completed) return;
  m_pending->block();
  complete();
}

void Work::wait_stream(core::StreamHandle stream) {
  if (m_completed) return;
  if (m_pending->order_stream(stream)) complete();
}

// ---- Communicator ----------------------------------------------------------------------

Communicator::Communicator(MPI_Comm parent, core::Device device, CommOptions options)
    : m_device(device), m_options(std::move(options)), m_watchdog(Watchdog::shared()) {
  register_mpi_error_text();
  COHORT_CHECK(mpi_active(), "Communicator: MPI is not initialised (create an MpiSession first)");
  COHORT_CHECK(
      m_options.timeout_s > 0,
      fmt::format("Communicator: collective timeout {} s must be positive", m_options.timeout_s));
  COHORT_MPI_CHECK(MPI_Comm_rank(parent, &m_rank));
  COHORT_MPI_CHECK(MPI_Comm_size(parent, &m_size));
  if (m_options.check) {
    // Fingerprints travel on their own communicator so that they can never be
    // matched with the collectives they describe.
    COHORT_MPI_CHECK(MPI_Comm_dup(parent, &m_check_comm));
    COHORT_MPI_CHECK(MPI_Comm_set_errhandler(m_check_comm, MPI_ERRORS_RETURN));
  }
}

Communicator::~Communicator() {
  if (m_check_comm != MPI_COMM_NULL && mpi_active() && std::uncaught_exceptions() == 0)
    COHORT_MPI_CHECK_PRINT(MPI_Comm_free(&m_check_comm));
}

bool Communicator::is_block_of(const core::Tensor& part, const core::Tensor& whole, int rank) {
  return part.shares_storage_with(whole) && part.dtype() == whole.dtype() &&
         part.byte_offset() == whole.byte_offset() + static_cast<size_t>(rank) * part.nbytes();
}

namespace {
bool bytes_overlap(const core::Tensor& a, const core::Tensor& b) {
  if (!a.shares_storage_with(b) || a.nbytes() == 0 || b.nbytes() == 0) return false;
  return a.byte_offset() < b.byte_offset() + b.nbytes() &&
         b.byte_offset() < a.byte_offset() + a.nbytes();
}
}  // namespace

void Communicator::check_tensor(const char* what, const core::Tensor& t) const {
  COHORT_CHECK(t.defined(), fmt::format("{}: undefined tensor", what));
  COHORT_CHECK(t.device() == m_device,
               fmt::format("{}: tensor {} must be on {} for the {} communicator", what, t.str(),
                           m_device.str(), backend_name()));
  COHORT_CHECK(supports(t.dtype()),
               fmt::format("{}: the {} backend does not support dtype {} ({})", what,
                           backend_name(), core::dtype_name(t.dtype()), t.str()));
}

namespace {
void check_reduce(const char* what, ReduceOp op, const core::Tensor& t) {
  COHORT_CHECK(
      op == ReduceOp::sum || core::is_floating(t.dtype()),
      fmt::format("{}: average needs a floating-point tensor, got {} (use sum)", what, t.str()));
}
}  // namespace

WorkPtr Communicator::all_reduce(const core::Tensor& tensor, ReduceOp op,
                                 core::StreamHandle stream) {
  check_tensor("all_reduce", tensor);
  check_reduce("all_reduce", op, tensor);
  Call call{{CollectiveOp::all_reduce, tensor.dtype(), tensor.numel(), op}, tensor, tensor, stream};
  return issue(std::move(call));
}

WorkPtr Communicator::reduce_scatter(const core::Tensor& input, const core::Tensor& output,
                                     ReduceOp op, core::StreamHandle stream) {
  check_tensor("reduce_scatter input", input);
  check_tensor("reduce_scatter output", output);
  check_reduce("reduce_scatter", op, input);
  COHORT_CHECK(input.dtype() == output.dtype() && input.numel() == m_size * output.numel(),
               fmt::format("reduce_scatter over {} ranks: input {} must hold {} blocks of output "
                           "{} (same dtype)",
                           m_size, input.str(), m_size, output.str()));
  COHORT_CHECK(!bytes_overlap(input, output) || is_block_of(output, input, m_rank),
               fmt::format("reduce_scatter: output {} overlaps input {} but is not block {} of it "
                           "(the only in-place form)",
                           output.str(), input.str(), m_rank));
  Call call{
      {CollectiveOp::reduce_scatter, input.dtype(), input.numel(), op}, input, output, stream};
  return issue(std::move(call));
}

WorkPtr Communicator::all_gather(const core::Tensor& input, const core::Tensor& output,
                                 core::StreamHandle stream) {
  check_tensor("all_gather input", input);
  check_tensor("all_gather output", output);
  COHORT_CHECK(input.dtype() == output.dtype() && output.numel() == m_size * input.numel(),
               fmt::format("all_gather over {} ranks: output {} must hold {} blocks of input {} "
                           "(same dtype)",
                           m_size, output.str(), m_size, input.str()));
  COHORT_CHECK(!bytes_overlap(input, output) || is_block_of(input, output, m_rank),
               fmt::format("all_gather: input {} overlaps output {} but is not block {} of it "
                           "(the only in-place form)",
                           input.str(), output.str(), m_rank));
  Call call{{CollectiveOp::all_gather, input.dtype(), output.numel()}, input, output, stream};
  return issue(std::move(call));
}

WorkPtr Communicator::reduce(const core::Tensor& tensor, int root, ReduceOp op,
                             core::StreamHandle stream) {
  check_tensor("reduce", tensor);
  check_reduce("reduce", op, tensor);
  COHORT_CHECK(root >= 0 && root < m_size,
               fmt::format("reduce of {}: root {} is not a rank of this communicator (size {})",
                           tensor.str(), root, m_size));
  CollectiveInfo info{CollectiveOp::reduce, tensor.dtype(), tensor.numel(), op};
  info.root = root;
  return issue(Call{info, tensor, tensor, stream});
}

WorkPtr Communicator::broadcast(const core::Tensor& tensor, int root, core::StreamHandle stream) {
  check_tensor("broadcast", tensor);
  COHORT_CHECK(root >= 0 && root < m_size,
               fmt::format("broadcast of {}: root {} is not a rank of this communicator (size {})",
                           tensor.str(), root, m_size));
  CollectiveInfo info{CollectiveOp::broadcast, tensor.dtype(), tensor.numel()};
  info.root = root;
  return issue(Call{info, tensor, tensor, stream});
}

WorkPtr Communicator::barrier(core::StreamHandle stream) {
  return issue(Call{{CollectiveOp::barrier, core::DType::f32, 0}, {}, {}, stream});
}

WorkPtr Communicator::issue(Call call) {
  call.info.sequence = ++m_sequence;
  if (inject_fault(call.info)) return std::make_shared<Work>(call.info, nullptr, nullptr);
  if (m_options.check) check_fingerprint(call.info);
  Totals& totals = m_totals[static_cast<size_t>(call.info.op)];
  ++totals.calls;
  totals.bytes += call.info.count * static_cast<int64_t>(core::dtype_size(call.info.dtype));
  // Starting may itself wait for the peers (NCCL connects lazily, inside the
  // first collective that needs a connection): watched too, so a rank that never
  // arrives ends the job instead of hanging it before any Work exists.
  std::string what = fmt::format("{} [{} backend]", call.info.str(), backend_name());
  std::unique_ptr<PendingCollective> pending;
  {
    const std::shared_ptr<Watch> starting =
        m_watchdog->watch("starting " + what, m_options.timeout_s);
    // Finished however start() ends: a start that throws is reported by the
    // exception, not later as the timeout of a watch nobody finished.
    struct FinishOnExit {
      Watch& watch;
      ~FinishOnExit() { watch.finish(); }
    } finish_on_exit{*starting};
    pending = start(call);
  }
  std::shared_ptr<Watch> watch;
  if (pending)
    watch = m_watchdog->watch(std::move(what), m_options.timeout_s, pending->watchdog_probe());
  return std::make_shared<Work>(call.info, std::move(pending), std::move(watch));
}

bool Communicator::inject_fault(const CollectiveInfo& info) const {
  for (const FaultSpec& fault : m_options.faults) {
    if (fault.rank != m_rank || fault.step != info.sequence) continue;
    const std::string what =
        fmt::format("injected fault (COHORT_FAULT): {} at {} on the {} backend",
                    fault_action_name(fault.action), info.str(), backend_name());
    const std::string message = fmt::format("{} [{}]", what, process_identity());
    switch (fault.action) {
      case FaultSpec::Action::exit:
        std::fprintf(stderr, "cohort: %s; exiting without MPI_Finalize\n", message.c_str());
        std::fflush(stderr);
        std::fflush(stdout);
        std::_Exit(3);
      case FaultSpec::Action::hang:
        std::fprintf(stderr, "cohort: %s; this thread now sleeps forever\n", message.c_str());
        std::fflush(stderr);
        for (;;)
          std::this_thread::sleep_for(std::chrono::hours(1));
      case FaultSpec::Action::throw_error:
        COHORT_FAIL(what);  // the error adds the identity
      case FaultSpec::Action::skip:
        std::fprintf(stderr, "cohort: %s; the collective is not issued\n", message.c_str());
        std::fflush(stderr);
        return true;
    }
  }
  return false;
}

void Communicator::check_fingerprint(const CollectiveInfo& info) {
  const Fingerprint mine = Fingerprint::of(info);
  std::vector<Fingerprint> all(static_cast<size_t>(m_size));
  constexpr int kFields = static_cast<int>(std::size(Fingerprint{}.fields));
  MPI_Request request = MPI_REQUEST_NULL;
  COHORT_MPI_CHECK(MPI_Iallgather(mine.fields, kFields, MPI_INT64_T, all.data(), kFields,
                                  MPI_INT64_T, m_check_comm, &request));
  // A rank that never arrives must not hang the check itself.
  const std::shared_ptr<Watch> watch = m_watchdog->watch(
      fmt::format("fingerprint check (COHORT_COLLECTIVE_CHECK) before {}", info.str()),
      m_options.timeout_s);
  const int status = MPI_Wait(&request, MPI_STATUS_IGNORE);
  watch->finish();
  COHORT_MPI_CHECK(status);
  const std::string mismatch = describe_mismatch(all);
  COHORT_CHECK(mismatch.empty(),
               fmt::format("collective check (COHORT_COLLECTIVE_CHECK) failed at this rank's {}: "
                           "ranks disagree: {}",
                           info.str(), mismatch));
}

// ---- factory ----------------------------------------------------------------------------

Backend parse_backend(const std::string& text) {
  if (text == "mpi") return Backend::mpi;
  if (text == "nccl") return Backend::nccl;
  COHORT_FAIL(fmt::format("communication backend '{}': expected mpi or nccl", text));
}

const char* backend_name(Backend backend) {
  return backend == Backend::mpi ? "mpi" : "nccl";
}

}  // namespace cohort::comm
