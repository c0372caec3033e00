#pragma once
// Step-time breakdown per rank: data wait (host blocked on the loader), exposed
// communication (host blocked on collectives that backward did not hide) and
// compute (the rest of the step). summarize() gathers every rank's means and
// names the slowest rank (the straggler).
#include <mpi.h>

#include <chrono>
#include <string>
#include <vector>

namespace cohort::comm {

struct StepBreakdown {
  double data_s = 0, comm_s = 0, compute_s = 0;  // means per step
  double total_s() const { return data_s + comm_s + compute_s; }
};

class StepTimer {
 public:
  using Clock = std::chrono::steady_clock;

  void begin_step() { m_start = Clock::now(); }
  void add_data_wait(double seconds) { m_data += seconds; }
  void add_exposed_comm(double seconds) { m_comm += seconds; }
  // Closes the step; compute = wall time - data wait - exposed communication.
  void end_step();

  int steps() const { return m_steps; }
  StepBreakdown mean() const;
  void reset() { *this = StepTimer(); }

 private:
  Clock::time_point m_start{};
  double m_data = 0, m_comm = 0, m_wall = 0;
  int m_steps = 0;
};

struct RankBreakdowns {
  std::vector<StepBreakdown> ranks;  // index = rank
  int slowest_rank = 0;
  // One line per rank plus the straggler, e.g. "rank 3: data 1.2 ms, comm 4.0 ms, ...".
  std::string str() const;
};

// Collective over `comm`: every rank gets every rank's breakdown.
RankBreakdowns summarize(const StepTimer& timer, MPI_Comm comm);

}  // namespace cohort::comm
