#pragma once
// PNG (libpng) and JPEG (libjpeg-turbo) decoding and encoding, from and to memory.
//
// Every failure throws cohort::Error whose message starts with `name` (the file's
// path, or "shard X sample N" for bytes read from a shard) and carries the library's
// own text. Corrupt data is an error, never a silently grey image: libjpeg's
// "corrupt data" warnings are treated as errors, and libpng checks the CRC of
// every critical chunk. Both libraries report errors by longjmp; the code that can
// be jumped over holds no C++ objects with destructors (see image_codec.cpp).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cohort::data {

// An 8-bit image, row-major [height, width, channels].
struct Image8 {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;

  size_t bytes() const { return static_cast<size_t>(height * width * channels); }
};

// A 16-bit single-channel image (Cityscapes disparity), row-major [height, width].
struct Image16 {
  int64_t height = 0, width = 0;
  std::vector<uint16_t> pixels;
};

enum class ImageFileFormat { png, jpeg };
const char* to_string(ImageFileFormat format);

// The format from the first bytes (PNG signature, JPEG SOI marker), if either.
std::optional<ImageFileFormat> sniff_image_format(const uint8_t* data, size_t size);

struct ImageInfo {
  ImageFileFormat format = ImageFileFormat::png;
  int64_t height = 0, width = 0;
  int channels = 0;      // as stored: 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha (or CMYK)
  int bit_depth = 8;     // bits per sample as stored
  bool palette = false;  // PNG colour type 3 (indices into a palette)
};

// Reads only the header (cheap: used to check sizes of a whole tree before converting).
ImageInfo read_image_info(const uint8_t* data, size_t size, const std::string& name);
ImageInfo read_image_info_file(const std::string& path);

// Decodes a PNG or JPEG into 8-bit pixels. `channels`: 1 (grey), 3 (RGB), or 0 (as
// stored, alpha dropped: 1 for grey, 3 for colour). 16-bit PNGs are reduced to 8
// bits, palettes expanded; no gamma or colour-profile conversion is applied.
Image8 decode_image(const uint8_t* data, size_t size, int channels, const std::string& name);

// The part of an image a caller reads: rows [row_begin, row_end), columns
// [col_begin, col_end) (clamped to the image).
struct ImageWindow {
  int64_t row_begin = 0, row_end = 0, col_begin = 0, col_end = 0;
};
// decode_image for a caller that reads only `window` (the loader: the source
// pixels of one random crop). Inside the window the pixels are those of
// decode_image; outside they are unspecified. The work saved: a PNG stops after
// the window's last row (rows above it must be decoded: each row's filter needs
// the one above); a JPEG skips the rows above the window (entropy decoding only),
// keeps the columns outside it from the inverse DCT and colour conversion, and
// stops after its last row. Bytes after the last decoded row are not examined:
// the shard's checksums vouch for them.
Image8 decode_image_window(const uint8_t* data, size_t size, int channels, const std::string& name,
                           const ImageWindow& window);
Image8 read_image_file(const std::string& path, int channels);

// Decodes a PNG of label ids verbatim: 8-bit (or fewer bits) grey values, or palette
// indices (never expanded to colours). Anything else (RGB, 16-bit) is an error: a
// label image converted to colour would silently turn ids into intensities.
Image8 decode_png_label(const uint8_t* data, size_t size, const std::string& name);

// Decodes a 16-bit single-channel PNG (Cityscapes disparity) verbatim.
Image16 decode_png16(const uint8_t* data, size_t size, const std::string& name);

// `level`: zlib level 0..9. 1 or 3 channels (4 allowed for PNG).
std::vector<uint8_t> encode_png(const Image8& image, int level = 6);
std::vector<uint8_t> encode_png16(const Image16& image, int level = 6);
// `quality` 1..100; 1 or 3 channels; 4:2:0 chroma subsampling for colour.
std::vector<uint8_t> encode_jpeg(const Image8& image, int quality = 95);

std::vector<uint8_t> read_file_bytes(const std::string& path);
void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace cohort::data
