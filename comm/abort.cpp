#include "comm/abort.hpp"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "comm/mpi_check.hpp"
#include "core/error.hpp"

namespace cohort::comm {
namespace {

struct Hooks {
  std::mutex mutex;
  int next_id = 0;
  std::vector<std::pair<int, std::function<void()>>> list;
};
Hooks& hooks() {
  static Hooks* h = new Hooks;  // never destroyed: an abort may race static destruction
  return *h;
}
std::atomic<bool> g_aborting{false};
// How long the abort hooks may take before the process exits regardless.
constexpr int kAbortHookSeconds = 5;

}  // namespace

int add_abort_hook(std::function<void()> hook) {
  Hooks& h = hooks();
  std::lock_guard lock(h.mutex);
  h.list.emplace_back(++h.next_id, std::move(hook));
  return h.next_id;
}

void remove_abort_hook(int id) {
  Hooks& h = hooks();
  std::lock_guard lock(h.mutex);
  std::erase_if(h.list, [id](const auto& entry) { return entry.first == id; });
}

void abort_job(const std::string& reason, int exit_code) noexcept {
  if (g_aborting.exchange(true)) {
    // Another thread is already ending the job; wait to be killed with it.
    for (;;)
      std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::string identity;
  try {
    identity = process_identity();
  } catch (...) {
  }
  std::fprintf(stderr, "cohort: %s\ncohort: aborting the job [%s]\n", reason.c_str(),
               identity.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  // A hook that never returns (ncclCommAbort stuck behind a wedged GPU) must not
  // keep the process alive: whatever the hooks have done by then, the process
  // ends a few seconds later anyway.
  std::thread([exit_code] {
    std::this_thread::sleep_for(std::chrono::seconds(kAbortHookSeconds));
    std::fprintf(stderr, "cohort: abort hooks did not finish in %d s; exiting\n",
                 kAbortHookSeconds);
    std::fflush(stderr);
    std::_Exit(exit_code);
  }).detach();
  {
    Hooks& h = hooks();
    std::lock_guard lock(h.mutex);
    for (auto& [id, hook] : h.list) {
      try {
        hook();
      } catch (...) {
        std::fprintf(stderr, "cohort: an abort hook failed; continuing the abort\n");
      }
    }
  }
  // Below MPI_THREAD_MULTIPLE, calling MPI_Abort from a second thread (the
  // watchdog) while the main thread is blocked inside MPI is erroneous and may
  // itself hang; exiting without MPI_Finalize makes the launcher end every rank
  // (tested: tests/mpi fault "exit").
  int level = MPI_THREAD_SINGLE;
  if (mpi_active() && MPI_Query_thread(&level) == MPI_SUCCESS && level == MPI_THREAD_MULTIPLE)
    MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

int run_rank_main(const std::function<int()>& fn) noexcept {
  std::string reason;
  try {
    return fn();
  } catch (const std::exception& e) {
    reason = std::string("uncaught exception: ") + e.what();
  } catch (...) {
    reason = "uncaught exception of unknown type";
  }
  if (!mpi_active()) {
    std::fprintf(stderr, "cohort: %s\n", reason.c_str());
    return 1;
  }
  abort_job(reason, 1);
}

}  // namespace cohort::comm
