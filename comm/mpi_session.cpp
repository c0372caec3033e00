#include "comm/mpi_session.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "comm/mpi_check.hpp"
#include "core/error.hpp"

namespace cohort::comm {
namespace {

std::atomic<MpiSession*> g_current{nullptr};

// Slurm's srun starts MPI ranks only through a PMI plugin; without one, Open MPI
// aborts inside MPI_Init with a message that does not say so. Hint before that.
void warn_if_srun_without_pmi() {
  if (std::getenv("SLURM_STEP_ID") == nullptr) return;
  if (std::getenv("PMIX_RANK") != nullptr || std::getenv("PMI_RANK") != nullptr) return;
  std::fprintf(stderr,
               "cohort: started by srun (SLURM_STEP_ID is set) without a PMI plugin in the "
               "environment; if MPI_Init fails next, launch with `srun --mpi=pmix`\n");
}

// More ranks than cores on a node: ranks that busy-poll while waiting starve the
// ones working (measured here: 4 ranks on 2 cores under srun, 75 s instead of
// 1.4 s). mpirun --oversubscribe turns on yielding; srun does not.
void warn_if_oversubscribed(int local_rank, int local_size, const std::string& host) {
  const unsigned cores = std::thread::hardware_concurrency();  // the node's, not the mask's
  if (local_rank != 0 || cores == 0 || static_cast<unsigned>(local_size) <= cores) return;
  // Open MPI yields when told to, or when mpirun --oversubscribe started the ranks.
  for (const char* knob : {"OMPI_MCA_mpi_yield_when_idle", "OMPI_MCA_mpi_oversubscribe"}) {
    const char* v = std::getenv(knob);
    if (v != nullptr && v[0] == '1') return;
  }
  std::fprintf(
      stderr,
      "cohort: %d ranks share the %u cores of %s: waiting ranks will busy-poll; set "
      "OMPI_MCA_mpi_yield_when_idle=1 (mpirun --oversubscribe does) or start fewer ranks\n",
      local_size, cores, host.c_str());
}

}  // namespace

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
    default:
      return "unknown";
  }
}

MpiSession::MpiSession(int* argc, char*** argv, SessionOptions options)
    : m_exceptions_at_construction(std::uncaught_exceptions()) {
  COHORT_CHECK(g_current.load() == nullptr,
               "MpiSession: a session already exists in this process (create one per process)");
  register_mpi_error_text();
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    COHORT_MPI_CHECK(MPI_Query_thread(&m_thread_level));
  } else {
    int finalized = 0;
    MPI_Finalized(&finalized);
    COHORT_CHECK(!finalized, "MpiSession: MPI was already finalized in this process");
    warn_if_srun_without_pmi();
    const int status = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &m_thread_level);
    if (status != MPI_SUCCESS)
      throw_library_error(Library::mpi, status, "MPI_Init_thread", __FILE__, __LINE__);
    m_owns_mpi = true;
  }
  if (m_thread_level < MPI_THREAD_SERIALIZED) {
    const std::string message = fmt::format(
        "MpiSession: the MPI library provides only {} (MPI_THREAD_MULTIPLE was requested, "
        "MPI_THREAD_SERIALIZED is the minimum: the collective watchdog runs on its own thread); "
        "use an MPI built with thread support",
        thread_level_name(m_thread_level));
    if (m_owns_mpi) MPI_Finalize();
    COHORT_FAIL(message);
  }
  COHORT_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  COHORT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &m_rank));
  COHORT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &m_size));

  char name[MPI_MAX_PROCESSOR_NAME] = {0};
  int length = 0;
  COHORT_MPI_CHECK(MPI_Get_processor_name(name, &length));
  m_host.assign(name, static_cast<size_t>(length));
  set_process_identity(m_rank, m_host);

  // Ranks that can share memory are on one node; ordering them by world rank
  // makes local ranks follow the launcher's placement.
  COHORT_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, m_rank, MPI_INFO_NULL,
                                       &m_node_comm));
  COHORT_MPI_CHECK(MPI_Comm_set_errhandler(m_node_comm, MPI_ERRORS_RETURN));
  COHORT_MPI_CHECK(MPI_Comm_rank(m_node_comm, &m_local_rank));
  COHORT_MPI_CHECK(MPI_Comm_size(m_node_comm, &m_local_size));

  warn_if_oversubscribed(m_local_rank, m_local_size, m_host);
  m_device = assign_device(m_node_comm, m_rank, m_host, options.device);
  g_current.store(this);
}

MpiSession::~MpiSession() {
  g_current.store(nullptr);
  if (!mpi_active()) return;
  // Unwinding: other ranks may never reach MPI_Finalize, which would wait for
  // them; leave MPI up so that the handler (run_rank_main) can MPI_Abort.
  const bool unwinding = std::uncaught_exceptions() > m_exceptions_at_construction;
  if (m_node_comm != MPI_COMM_NULL && !unwinding)
    COHORT_MPI_CHECK_PRINT(MPI_Comm_free(&m_node_comm));
  if (m_owns_mpi && !unwinding) COHORT_MPI_CHECK_PRINT(MPI_Finalize());
}

MpiSession* MpiSession::current() {
  return g_current.load();
}

}  // namespace cohort::comm
