// TensorBoard event files: protobuf wire format by hand (only varints, 32/64-bit
// fixed fields and length-delimited fields are needed) in TFRecord framing.
#include "core/io/tensorboard_events.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.hpp"

namespace cohort::core::io {
namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit)
      c = (c & 1u) != 0 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// Protobuf wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}
template <typename T>
void put_fixed(std::string& out, T value) {  // protobuf's fixed fields are little endian
  static_assert(std::endian::native == std::endian::little, "big-endian hosts unsupported");
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

// An Event with its wall time and step; `what` is the rest, already encoded.
std::string event(int64_t step, const std::string& what) {
  std::string out;
  const double wall_time =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  put_key(out, 1, 1);
  put_fixed(out, wall_time);
  put_key(out, 2, 0);
  put_varint(out, static_cast<uint64_t>(step));  // int64: two's complement varint
  return out + what;
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < size; ++i)
    c = kCrc32cTable[(c ^ p[i]) & 0xffu] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  // TensorBoard reads a directory's files in name order. Microseconds after the
  // seconds keep the names in order of creation even for runs less than a second
  // apart (a resumed run's purge must be read after the run it corrects); the
  // serial separates writers of one process.
  static std::atomic<int> serial{0};
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  m_path = (std::filesystem::path(dir) / fmt::format("events.out.tfevents.{}.{:06d}.{}.{}.{}",
                                                     now / 1000000, now % 1000000, host_name(),
                                                     getpid(), serial++))
               .string();
  m_file = std::fopen(m_path.c_str(), "wb");
  COHORT_CHECK(m_file != nullptr,
               fmt::format("TensorBoard log: cannot create {}: {}", m_path, std::strerror(errno)));
  std::string version;
  put_bytes(version, 3, "brain.Event:2");
  write_record(event(0, version));
}

TensorBoardWriter::~TensorBoardWriter() {
  if (m_file != nullptr) std::fclose(m_file);
}

void TensorBoardWriter::add_scalars(int64_t step, const std::vector<Scalar>& scalars) {
  std::string summary;
  for (const Scalar& s : scalars) {
    std::string value;
    put_bytes(value, 1, s.tag);
    put_key(value, 2, 5);
    put_fixed(value, static_cast<float>(s.value));
    put_bytes(summary, 1, value);
  }
  std::string what;
  put_bytes(what, 5, summary);
  write_record(event(step, what));
}

void TensorBoardWriter::add_session_start(int64_t step) {
  std::string session_log;
  put_key(session_log, 1, 0);
  put_varint(session_log, 1);  // SessionLog.START
  std::string what;
  put_bytes(what, 7, session_log);  // 6 is the deprecated log_message
  write_record(event(step, what));
}

void TensorBoardWriter::write_record(const std::string& event) {
  std::string record;
  const uint64_t length = event.size();
  put_fixed(record, length);
  put_fixed(record, masked_crc32c(record.data(), record.size()));
  record += event;
  put_fixed(record, masked_crc32c(event.data(), event.size()));
  const bool written = std::fwrite(record.data(), 1, record.size(), m_file) == record.size() &&
                       std::fflush(m_file) == 0;
  COHORT_CHECK(written,
               fmt::format("TensorBoard log: cannot write {}: {}", m_path, std::strerror(errno)));
}

}  // namespace cohort::core::io
