#include "data/checksum.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.hpp"

namespace cohort::data {

uint32_t crc32_bytes(const void* data, size_t size, uint32_t crc) {
  uLong c = crc;
  const auto* p = static_cast<const Bytef*>(data);
  constexpr size_t kPiece = size_t{1} << 30;  // zlib lengths are uInt
  while (size > 0) {
    const size_t n = std::min(size, kPiece);
    c = crc32(c, p, static_cast<uInt>(n));
    p += n;
    size -= n;
  }
  return static_cast<uint32_t>(c);
}

uint32_t crc32_file(const std::string& path, uint64_t* bytes_out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  COHORT_CHECK(fd >= 0,
               fmt::format("{}: cannot open for checksumming: {}", path, std::strerror(errno)));
  std::vector<uint8_t> buffer(size_t{4} << 20);
  uint32_t crc = 0;
  uint64_t total = 0;
  for (;;) {
    const ssize_t got = ::read(fd, buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int err = errno;
      ::close(fd);
      COHORT_FAIL(
          fmt::format("{}: read failed after {} bytes: {}", path, total, std::strerror(err)));
    }
    if (got == 0) break;
    crc = crc32_bytes(buffer.data(), static_cast<size_t>(got), crc);
    total += static_cast<uint64_t>(got);
  }
  ::close(fd);
  if (bytes_out != nullptr) *bytes_out = total;
  return crc;
}

uint32_t hdf5_fletcher32(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t sum1 = 0, sum2 = 0;
  size_t words = size / 2;
  // 360 words is the most that can be added before sum2 could overflow 32 bits.
  while (words > 0) {
    size_t block = std::min<size_t>(words, 360);
    words -= block;
    do {
      sum1 += (static_cast<uint32_t>(p[0]) << 8) | p[1];
      sum2 += sum1;
      p += 2;
    } while (--block > 0);
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (size % 2 != 0) {
    sum1 += static_cast<uint32_t>(p[0]) << 8;
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return (sum2 << 16) | sum1;
}

std::string crc32_hex(uint32_t crc) {
  return fmt::format("{:08x}", crc);
}

uint32_t parse_crc32_hex(const std::string& text, const std::string& where) {
  COHORT_CHECK(
      text.size() == 8 && text.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos,
      fmt::format("{}: crc32 '{}' is not 8 hexadecimal digits", where, text));
  return static_cast<uint32_t>(std::stoul(text, nullptr, 16));
}

}  // namespace cohort::data
