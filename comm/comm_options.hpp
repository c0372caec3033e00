#pragma once
// Options every communicator shares: the collective deadline, check mode and
// injected faults. from_env() reads them from the environment, so the same
// settings reach every rank of a job without touching the code:
//
//   COHORT_COLLECTIVE_TIMEOUT=<seconds>   deadline of each collective (default 600)
//   COHORT_COLLECTIVE_CHECK=1             compare a fingerprint of every collective
//                                         across ranks before running it
//   COHORT_FAULT=<rank>:<step>:<action>[,<rank>:<step>:<action>...]
//       makes rank <rank> misbehave at its <step>-th collective on a
//       communicator (the collective's sequence number, counted from 1 per
//       communicator; fingerprint exchanges are not counted). Actions:
//         exit   the process ends at once (exit code 3) without MPI_Finalize
//         hang   the calling thread sleeps forever instead of issuing it
//         throw  a cohort::Error is thrown from the collective call
//         skip   the collective is silently not issued (a missing collective:
//                the other ranks time out, or check mode names it)
//       Faults exist so that tests can prove that failures end the job.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cohort::comm {

struct FaultSpec {
  enum class Action { exit, hang, throw_error, skip };
  int rank = 0;
  uint64_t step = 0;
  Action action = Action::throw_error;
  bool operator==(const FaultSpec&) const = default;
};
const char* fault_action_name(FaultSpec::Action action);
// Parses the COHORT_FAULT syntax above; throws naming the bad entry.
std::vector<FaultSpec> parse_faults(std::string_view text);

struct CommOptions {
  double timeout_s = 600.0;
  bool check = false;
  std::vector<FaultSpec> faults;

  static CommOptions from_env();
};

// Parses COHORT_COLLECTIVE_TIMEOUT's value (positive seconds); throws otherwise.
double parse_timeout_seconds(std::string_view text);

}  // namespace cohort::comm
