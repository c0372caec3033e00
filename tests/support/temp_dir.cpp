#include "tests/support/temp_dir.hpp"

#include <unistd.h>

#include <atomic>
#include <system_error>

namespace cohort::testing {

TempDir::TempDir(const std::string& prefix) {
  // ctest runs tests in parallel processes: the pid keeps them apart, the
  // counter keeps apart the directories of one process.
  static std::atomic<int> counter{0};
  m_path = std::filesystem::temp_directory_path() /
           (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(m_path);
  std::filesystem::create_directories(m_path);
}

TempDir::~TempDir() {
  std::error_code ec;  // best effort: a destructor must not throw
  std::filesystem::remove_all(m_path, ec);
}

}  // namespace cohort::testing
