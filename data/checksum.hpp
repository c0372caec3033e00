#pragma once
// Checksums used by the shard format (docs/SHARD_FORMAT.md):
//  - CRC32 (zlib's polynomial) of whole shard files, recorded in manifest.json;
//  - HDF5's Fletcher-32, which HDF5 appends to every chunk of a dataset that has
//    the fletcher32 filter. The reader copies chunks raw (H5Dread_chunk, no filters
//    run under HDF5's global lock) and checks them with this implementation.
#include <cstddef>
#include <cstdint>
#include <string>

namespace cohort::data {

uint32_t crc32_bytes(const void* data, size_t size, uint32_t crc = 0);

// CRC32 of a whole file, read in pieces; throws cohort::Error naming the file when it
// cannot be opened or read. `bytes_out` (optional) receives the file's length.
uint32_t crc32_file(const std::string& path, uint64_t* bytes_out = nullptr);

// Fletcher-32 exactly as HDF5's fletcher32 filter computes it: 16-bit big-endian
// words (an odd last byte is the high byte of a final word), both sums folded with
// end-around carry (so a sum is kept in 1..0xffff, never reduced to 0), result
// (sum2 << 16) | sum1. HDF5 stores it little-endian after the chunk's data.
uint32_t hdf5_fletcher32(const void* data, size_t size);

// "1a2b3c4d": how manifest.json writes a CRC32.
std::string crc32_hex(uint32_t crc);
// Parses crc32_hex's form; throws cohort::Error (naming `where`) on anything else.
uint32_t parse_crc32_hex(const std::string& text, const std::string& where);

}  // namespace cohort::data
