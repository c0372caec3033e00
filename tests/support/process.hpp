#pragma once
// Running helper programs (Python tools, scripts) from tests.
#include <string>

namespace cohort::testing {

// Runs `command` through the shell and returns its standard output (followed by
// its standard error with merge_stderr). `status`: the exit code, or -1 when the
// command could not start or did not exit normally.
std::string run_command(const std::string& command, int& status, bool merge_stderr = false);

}  // namespace cohort::testing
