#pragma once
// Reads TensorBoard event files back for tests, independently of the writer's
// encoder: TFRecord framing with both CRCs checked, and the few Event fields
// cohort writes decoded from protobuf's wire format.
#include <cstdint>
#include <string>
#include <vector>

namespace cohort::testing {

struct TfEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;                            // empty unless set
  int session_status = 0;                              // SessionLog.status; 0: no session_log
  std::vector<std::pair<std::string, float>> scalars;  // (tag, simple_value)
};

// Every event in `path`; throws std::runtime_error naming the record and what is
// wrong (a bad CRC, a truncated record, an unexpected wire type).
std::vector<TfEvent> read_tfevents(const std::string& path);

// The events.out.tfevents.* files in `dir`, sorted by name (TensorBoard's order).
std::vector<std::string> tfevents_files(const std::string& dir);

}  // namespace cohort::testing
