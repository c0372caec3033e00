#pragma once
// TensorBoard event files (events.out.tfevents.*) with scalar summaries, written
// without TensorFlow or protobuf: the format is small and stable.
//
//   file    = record*
//   record  = u64 length (little endian), u32 masked CRC32C of those 8 bytes,
//             `length` bytes of a serialised tensorflow.Event,
//             u32 masked CRC32C of those bytes
//   masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8
//
// The Event messages used, as protobuf fields:
//   Event      { double wall_time = 1; int64 step = 2; string file_version = 3;
//                Summary summary = 5; SessionLog session_log = 7; }
//   Summary    { repeated Value value = 1; }
//   Value      { string tag = 1; float simple_value = 2; }
//   SessionLog { enum status = 1 (START = 1); }
//
// A file starts with the event {file_version: "brain.Event:2"}. A SessionLog
// START at step s tells TensorBoard's reader to drop every event of step >= s
// it has read so far: a run resumed from the checkpoint of step s - 1 writes it
// first, so steps that a crashed run logged after its last checkpoint do not
// show twice.
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace cohort::core::io {

// CRC32C (Castagnoli, reflected polynomial 0x82f63b78), as TFRecord uses it.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

// One scalar: a TensorBoard tag ("train/loss") and its value.
struct Scalar {
  std::string tag;
  double value = 0;  // stored as float, TensorBoard's simple_value
};

// Appends events to one new file in a directory; each record is flushed as it
// is written, so a killed run keeps what it logged (a record torn by the kill is
// the last one, and TensorBoard's reader stops there).
class TensorBoardWriter {
 public:
  // Creates `dir` if needed and a new file in it named
  // events.out.tfevents.<unix seconds>.<microseconds>.<host>.<pid>.<n> (names sort
  // in order of creation, as TensorBoard reads them). Throws cohort::Error
  // naming the file when it cannot be created.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  const std::string& path() const { return m_path; }

  // One Event holding all `scalars` at `step`.
  void add_scalars(int64_t step, const std::vector<Scalar>& scalars);
  // SessionLog START at `step` (see above).
  void add_session_start(int64_t step);

 private:
  void write_record(const std::string& event);

  std::string m_path;
  std::FILE* m_file = nullptr;
};

}  // namespace cohort::core::io
