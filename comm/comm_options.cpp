#include "comm/comm_options.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "core/error.hpp"

namespace cohort::comm {
namespace {

template <typename T>
bool parse_number(std::string_view text, T& out) {
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(text.data(), end, out);
  return result.ec == std::errc() && result.ptr == end;
}

FaultSpec parse_one_fault(std::string_view entry) {
  const auto bad = [&](const char* why) {
    return fmt::format(
        "COHORT_FAULT entry '{}': {} (expected <rank>:<step>:exit|hang|throw|skip, "
        "e.g. 1:3:hang)",
        entry, why);
  };
  const size_t first = entry.find(':');
  const size_t second = first == std::string_view::npos ? first : entry.find(':', first + 1);
  COHORT_CHECK(second != std::string_view::npos, bad("three fields separated by ':' needed"));
  FaultSpec spec;
  COHORT_CHECK(parse_number(entry.substr(0, first), spec.rank) && spec.rank >= 0,
               bad("rank is not a non-negative integer"));
  COHORT_CHECK(
      parse_number(entry.substr(first + 1, second - first - 1), spec.step) && spec.step >= 1,
      bad("step is not a collective sequence number (1, 2, ...)"));
  const std::string_view action = entry.substr(second + 1);
  if (action == "exit")
    spec.action = FaultSpec::Action::exit;
  else if (action == "hang")
    spec.action = FaultSpec::Action::hang;
  else if (action == "throw")
    spec.action = FaultSpec::Action::throw_error;
  else if (action == "skip")
    spec.action = FaultSpec::Action::skip;
  else
    COHORT_FAIL(bad("unknown action"));
  return spec;
}

}  // namespace

const char* fault_action_name(FaultSpec::Action action) {
  switch (action) {
    case FaultSpec::Action::exit:
      return "exit";
    case FaultSpec::Action::hang:
      return "hang";
    case FaultSpec::Action::throw_error:
      return "throw";
    case FaultSpec::Action::skip:
      return "skip";
  }
  return "?";
}

std::vector<FaultSpec> parse_faults(std::string_view text) {
  std::vector<FaultSpec> faults;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view entry = text.substr(0, comma);
    if (!entry.empty()) faults.push_back(parse_one_fault(entry));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return faults;
}

double parse_timeout_seconds(std::string_view text) {
  // std::from_chars for double is in libstdc++ 11+; strtod keeps older ones working.
  const std::string copy(text);
  char* end = nullptr;
  const double seconds = std::strtod(copy.c_str(), &end);
  COHORT_CHECK(
      !copy.empty() && end == copy.c_str() + copy.size() && std::isfinite(seconds) && seconds > 0,
      fmt::format("COHORT_COLLECTIVE_TIMEOUT='{}': expected a positive number of seconds", text));
  return seconds;
}

CommOptions CommOptions::from_env() {
  CommOptions options;
  if (const char* v = std::getenv("COHORT_COLLECTIVE_TIMEOUT"); v && *v)
    options.timeout_s = parse_timeout_seconds(v);
  if (const char* v = std::getenv("COHORT_COLLECTIVE_CHECK"); v && *v) {
    const std::string_view s(v);
    options.check = !(s == "0" || s == "false" || s == "off" || s == "no");
  }
  if (const char* v = std::getenv("COHORT_FAULT"); v && *v) options.faults = parse_faults(v);
  return options;
}

}  // namespace cohort::comm
