#include "tests/support/tfevents_reader.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "core/io/tensorboard_events.hpp"

namespace cohort::testing {
namespace {

// A cursor over protobuf bytes.
struct Wire {
  const std::string& bytes;
  size_t at = 0;
  size_t end = 0;

  bool done() const { return at >= end; }
  void need(size_t n) const {
    if (at + n > end) throw std::runtime_error("protobuf field runs past its message");
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      const auto b = static_cast<unsigned char>(bytes[at++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    throw std::runtime_error("varint longer than 10 bytes");
  }
  template <typename T>
  T fixed() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, bytes.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
  Wire sub() {  // a length-delimited field as its own cursor
    const size_t n = varint();
    need(n);
    Wire w{bytes, at, at + n};
    at += n;
    return w;
  }
  std::string text() {
    Wire w = sub();
    return bytes.substr(w.at, w.end - w.at);
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0:
        varint();
        break;
      case 1:
        fixed<uint64_t>();
        break;
      case 2:
        sub();
        break;
      case 5:
        fixed<uint32_t>();
        break;
      default:
        throw std::runtime_error("unknown wire type " + std::to_string(wire_type));
    }
  }
};

std::pair<std::string, float> decode_value(Wire w) {
  std::pair<std::string, float> out{"", 0.0f};
  while (!w.done()) {
    const uint64_t key = w.varint();
    if (key == (1 << 3 | 2))
      out.first = w.text();
    else if (key == (2 << 3 | 5))
      out.second = w.fixed<float>();
    else
      w.skip(static_cast<int>(key & 7));
  }
  return out;
}

TfEvent decode_event(const std::string& bytes) {
  TfEvent e;
  Wire w{bytes, 0, bytes.size()};
  while (!w.done()) {
    const uint64_t key = w.varint();
    const int field = static_cast<int>(key >> 3), type = static_cast<int>(key & 7);
    if (field == 1 && type == 1) {
      e.wall_time = w.fixed<double>();
    } else if (field == 2 && type == 0) {
      e.step = static_cast<int64_t>(w.varint());
    } else if (field == 3 && type == 2) {
      e.file_version = w.text();
    } else if (field == 5 && type == 2) {
      Wire summary = w.sub();
      while (!summary.done()) {
        const uint64_t k = summary.varint();
        if (k == (1 << 3 | 2))
          e.scalars.push_back(decode_value(summary.sub()));
        else
          summary.skip(static_cast<int>(k & 7));
      }
    } else if (field == 7 && type == 2) {  // session_log
      Wire log = w.sub();
      e.session_status = -1;  // present, status unset
      while (!log.done()) {
        const uint64_t k = log.varint();
        if (k == (1 << 3 | 0))
          e.session_status = static_cast<int>(log.varint());
        else
          log.skip(static_cast<int>(k & 7));
      }
    } else {
      w.skip(type);
    }
  }
  return e;
}

}  // namespace

std::vector<TfEvent> read_tfevents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<TfEvent> events;
  size_t at = 0;
  while (at < file.size()) {
    const std::string where = path + " record " + std::to_string(events.size());
    if (at + 12 > file.size()) throw std::runtime_error(where + ": truncated header");
    uint64_t length;
    uint32_t length_crc, data_crc;
    std::memcpy(&length, file.data() + at, 8);
    std::memcpy(&length_crc, file.data() + at + 8, 4);
    if (length_crc != core::io::masked_crc32c(file.data() + at, 8))
      throw std::runtime_error(where + ": bad length CRC");
    if (at + 12 + length + 4 > file.size()) throw std::runtime_error(where + ": truncated data");
    const std::string data = file.substr(at + 12, length);
    std::memcpy(&data_crc, file.data() + at + 12 + length, 4);
    if (data_crc != core::io::masked_crc32c(data.data(), data.size()))
      throw std::runtime_error(where + ": bad data CRC");
    events.push_back(decode_event(data));
    at += 12 + length + 4;
  }
  return events;
}

std::vector<std::string> tfevents_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().starts_with("events.out.tfevents."))
      out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace cohort::testing
