#include "core/determinism.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace cohort::core {
namespace {

std::atomic<bool>& flag() {
  static std::atomic<bool> enabled = [] {
    const char* v = std::getenv("COHORT_DETERMINISTIC");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return enabled;
}

}  // namespace

bool deterministic_algorithms() {
  return flag().load(std::memory_order_relaxed);
}
void set_deterministic_algorithms(bool enabled) {
  flag().store(enabled, std::memory_order_relaxed);
}

}  // namespace cohort::core
