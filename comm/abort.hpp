#pragma once
// Ending a job: a failure on one rank must end every rank, never leave the
// others waiting in a collective. abort_job prints the reason with this
// process's identity, runs the abort hooks (the NCCL backend registers
// ncclCommAbort, which unblocks GPU work stuck in a collective) and calls
// MPI_Abort(MPI_COMM_WORLD), which makes the launcher kill every rank and exit
// non-zero. Without MPI it ends this process only.
#include <functional>
#include <string>

namespace cohort::comm {

// Exit code of aborted jobs (MPI_Abort's error code).
constexpr int kAbortExitCode = 70;

[[noreturn]] void abort_job(const std::string& reason, int exit_code = kAbortExitCode) noexcept;

// Hooks run once, in registration order, by the first abort_job. Returns an id
// for remove_abort_hook (called by the hook's owner before it goes away).
int add_abort_hook(std::function<void()> hook);
void remove_abort_hook(int id);

// Runs a rank's main function. An exception escaping it is printed with the
// rank's identity and ends the whole job through abort_job; otherwise returns
// fn's result. Use it around everything after MPI is up:
//   int main(int argc, char** argv) {
//     return cohort::comm::run_rank_main([&] {
//       cohort::comm::MpiSession session(&argc, &argv);
//       ...
//       return 0;
//     });
//   }
int run_rank_main(const std::function<int()>& fn) noexcept;

}  // namespace cohort::comm
