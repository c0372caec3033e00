#include "tests/support/process.hpp"

#include <sys/wait.h>

#include <cstdio>

namespace cohort::testing {

std::string run_command(const std::string& command, int& status, bool merge_stderr) {
  std::string out;
  FILE* pipe = ::popen((merge_stderr ? command + " 2>&1" : command).c_str(), "r");
  if (pipe == nullptr) {
    status = -1;
    return out;
  }
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0)
    out.append(buffer, n);
  const int raw = ::pclose(pipe);
  status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return out;
}

}  // namespace cohort::testing
