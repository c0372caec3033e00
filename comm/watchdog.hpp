#pragma once
// Watchdog: a thread that watches outstanding collectives and ends the job when
// one outlives its deadline, so that a missing or stuck rank turns into a
// message and a non-zero exit instead of a job that hangs until the scheduler
// kills it.
//
// Whoever starts a collective registers a Watch (what it is, its deadline and,
// optionally, a probe the watchdog may call from its own thread: the NCCL
// backend queries the collective's CUDA event and the communicator's
// asynchronous error). The watch is finished by whoever observes completion:
// Work::wait/test, or the probe. MPI requests are not probed from the watchdog
// thread (MPI progress belongs to the thread that waits), so an MPI collective
// counts as outstanding until its Work is waited on or tested complete.
//
// On expiry the action runs once with a message naming the collective, rank
// and host; the default action is abort_job (ncclCommAbort via its hook, then
// MPI_Abort). Tests install their own action.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cohort::comm {

struct ProbeResult {
  bool done = false;
  std::string error;  // non-empty: the collective failed (e.g. NCCL async error)
};

class Watch {
 public:
  using Clock = std::chrono::steady_clock;
  Watch(std::string what, double timeout_s, std::function<ProbeResult()> probe);

  // Completion observed; the watchdog forgets this watch.
  void finish() { m_finished.store(true, std::memory_order_release); }
  bool finished() const { return m_finished.load(std::memory_order_acquire); }
  const std::string& what() const { return m_what; }
  Clock::time_point deadline() const { return m_deadline; }
  double timeout_s() const { return m_timeout_s; }

 private:
  friend class Watchdog;
  std::string m_what;
  double m_timeout_s;
  Clock::time_point m_deadline;
  std::function<ProbeResult()> m_probe;
  std::atomic<bool> m_finished{false};
};

class Watchdog {
 public:
  using Action = std::function<void(const std::string& message)>;

  // `action` runs on the watchdog thread for each watch that expires or fails
  // (default: abort_job). `tick` bounds how late an expiry is noticed.
  explicit Watchdog(Action action = {},
                    std::chrono::milliseconds tick = std::chrono::milliseconds(50));
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts watching `what` ("all_reduce #5 (f32, count 1024, sum)") for
  // `timeout_s` seconds from now.
  std::shared_ptr<Watch> watch(std::string what, double timeout_s,
                               std::function<ProbeResult()> probe = {});
  size_t outstanding() const;

  // The process-wide watchdog with the aborting action, shared by every
  // communicator; its thread ends when the last communicator lets go of it.
  static std::shared_ptr<Watchdog> shared();

 private:
  void run();

  Action m_action;
  std::chrono::milliseconds m_tick;
  mutable std::mutex m_mutex;
  std::condition_variable m_wake;
  std::vector<std::shared_ptr<Watch>> m_watches;
  bool m_stop = false;
  std::thread m_thread;
};

}  // namespace cohort::comm
