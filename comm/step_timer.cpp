#include "comm/step_timer.hpp"

#include <fmt/format.h>

#include "comm/mpi_check.hpp"

namespace cohort::comm {

void StepTimer::end_step() {
  const double wall = std::chrono::duration<double>(Clock::now() - m_start).count();
  m_wall += wall;
  ++m_steps;
}

StepBreakdown StepTimer::mean() const {
  if (m_steps == 0) return {};
  const double n = m_steps;
  return {m_data / n, m_comm / n, std::max(0.0, (m_wall - m_data - m_comm) / n)};
}

std::string RankBreakdowns::str() const {
  std::string out;
  for (size_t r = 0; r < ranks.size(); ++r) {
    const StepBreakdown& b = ranks[r];
    out += fmt::format(
        "rank {:>3}: step {:8.2f} ms = compute {:8.2f} + exposed comm {:8.2f} + "
        "data wait {:8.2f}{}\n",
        r, 1e3 * b.total_s(), 1e3 * b.compute_s, 1e3 * b.comm_s, 1e3 * b.data_s,
        static_cast<int>(r) == slowest_rank ? "   <- slowest" : "");
  }
  return out;
}

RankBreakdowns summarize(const StepTimer& timer, MPI_Comm comm) {
  int size = 1;
  COHORT_MPI_CHECK(MPI_Comm_size(comm, &size));
  const StepBreakdown mine = timer.mean();
  const double local[3] = {mine.data_s, mine.comm_s, mine.compute_s};
  std::vector<double> all(static_cast<size_t>(3 * size));
  COHORT_MPI_CHECK(MPI_Allgather(local, 3, MPI_DOUBLE, all.data(), 3, MPI_DOUBLE, comm));
  RankBreakdowns out;
  for (int r = 0; r < size; ++r) {
    out.ranks.push_back({all[3 * r], all[3 * r + 1], all[3 * r + 2]});
    if (out.ranks.back().total_s() > out.ranks[static_cast<size_t>(out.slowest_rank)].total_s())
      out.slowest_rank = r;
  }
  return out;
}

}  // namespace cohort::comm
