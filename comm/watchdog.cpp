#include "comm/watchdog.hpp"

#include <fmt/format.h>

#include "comm/abort.hpp"
#include "core/error.hpp"

namespace cohort::comm {
namespace {
std::string expiry_message(const Watch& watch) {
  return fmt::format(
      "collective watchdog: {} did not complete within {:g} s (COHORT_COLLECTIVE_TIMEOUT) on {}; "
      "another rank is missing, stuck, or issued a different collective "
      "(COHORT_COLLECTIVE_CHECK=1 compares them)",
      watch.what(), watch.timeout_s(), process_identity());
}
}  // namespace

Watch::Watch(std::string what, double timeout_s, std::function<ProbeResult()> probe)
    : m_what(std::move(what)),
      m_timeout_s(timeout_s),
      m_deadline(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(timeout_s))),
      m_probe(std::move(probe)) {}

Watchdog::Watchdog(Action action, std::chrono::milliseconds tick)
    : m_action(action ? std::move(action) : Action([](const std::string& m) { abort_job(m); })),
      m_tick(tick),
      m_thread([this] { run(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(m_mutex);
    m_stop = true;
  }
  m_wake.notify_all();
  m_thread.join();
}

std::shared_ptr<Watch> Watchdog::watch(std::string what, double timeout_s,
                                       std::function<ProbeResult()> probe) {
  auto w = std::make_shared<Watch>(std::move(what), timeout_s, std::move(probe));
  std::lock_guard lock(m_mutex);
  m_watches.push_back(w);
  return w;
}

size_t Watchdog::outstanding() const {
  std::lock_guard lock(m_mutex);
  size_t n = 0;
  for (const auto& w : m_watches)
    n += w->finished() ? 0 : 1;
  return n;
}

void Watchdog::run() {
  std::unique_lock lock(m_mutex);
  while (!m_stop) {
    m_wake.wait_for(lock, m_tick);
    if (m_stop) break;
    // Probe and judge a snapshot without the lock: probes call into CUDA/NCCL,
    // and the action may never return (abort_job).
    std::vector<std::shared_ptr<Watch>> snapshot;
    std::erase_if(m_watches, [](const auto& w) { return w->finished(); });
    snapshot = m_watches;
    lock.unlock();
    std::vector<std::string> failures;
    const auto now = Watch::Clock::now();
    for (const auto& w : snapshot) {
      if (w->finished()) continue;
      if (w->m_probe) {
        ProbeResult result;
        try {
          result = w->m_probe();
        } catch (const std::exception& e) {
          result.error = e.what();
        }
        if (result.done) {
          w->finish();
          continue;
        }
        if (!result.error.empty()) {
          w->finish();
          failures.push_back(fmt::format("collective watchdog: {} failed: {} on {}", w->what(),
                                         result.error, process_identity()));
          continue;
        }
      }
      if (now >= w->deadline()) {
        w->finish();
        failures.push_back(expiry_message(*w));
      }
    }
    for (const std::string& message : failures)
      m_action(message);
    lock.lock();
  }
}

std::shared_ptr<Watchdog> Watchdog::shared() {
  static std::mutex mutex;
  static std::weak_ptr<Watchdog> instance;
  std::lock_guard lock(mutex);
  std::shared_ptr<Watchdog> dog = instance.lock();
  if (!dog) {
    dog = std::make_shared<Watchdog>();
    instance = dog;
  }
  return dog;
}

}  // namespace cohort::comm
