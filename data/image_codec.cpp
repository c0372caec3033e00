#include "data/image_codec.hpp"

// Both libraries report errors with longjmp. A longjmp that skips a C++ destructor is
// undefined behaviour, so every libpng/libjpeg call runs inside a small "phase"
// function that calls setjmp first and has only trivially destructible locals; the
// phase returns false after a longjmp, and the C++ caller (which owns the buffers
// and the library state through RAII) turns that into a cohort::Error.
#include <fcntl.h>
#include <fmt/format.h>
#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
// jpeglib.h needs FILE and size_t declared before it.
#include <jpeglib.h>

// Windowed decoding uses jpeg_skip_scanlines and jpeg_crop_scanline, which only
// libjpeg-turbo (1.5 and later) has; Debian and Ubuntu ship it as libjpeg.
#if !defined(LIBJPEG_TURBO_VERSION_NUMBER) || LIBJPEG_TURBO_VERSION_NUMBER < 1005000
#error "cohort needs libjpeg-turbo >= 1.5 (libjpeg-turbo8-dev or libjpeg62-turbo-dev)"
#endif

#include "core/error.hpp"

namespace cohort::data {

const char* to_string(ImageFileFormat format) {
  return format == ImageFileFormat::png ? "PNG" : "JPEG";
}

std::optional<ImageFileFormat> sniff_image_format(const uint8_t* data, size_t size) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return ImageFileFormat::png;
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
    return ImageFileFormat::jpeg;
  return std::nullopt;
}

namespace {

// ---------------------------------------------------------------- PNG reading

struct PngIo {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  char message[256] = {0};
};

void png_read_from_memory(png_structp png, png_bytep out, png_size_t count) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (count > io->size - io->pos) png_error(png, "unexpected end of data (truncated PNG)");
  std::memcpy(out, io->data + io->pos, count);
  io->pos += count;
}

void png_on_error(png_structp png, png_const_charp message) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  std::snprintf(io->message, sizeof(io->message), "%s", message);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}  // benign (e.g. sRGB profile notes)

struct PngHeader {
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0, interlace = 0;
};

// Owns libpng's read state.
class PngReader {
 public:
  PngReader(const uint8_t* data, size_t size, const std::string& name) : m_name(name) {
    m_io.data = data;
    m_io.size = size;
    m_png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &m_io, &png_on_error, &png_on_warning);
    COHORT_CHECK(m_png != nullptr, fmt::format("{}: libpng could not allocate a reader", name));
    m_info = png_create_info_struct(m_png);
    COHORT_CHECK(m_info != nullptr, fmt::format("{}: libpng could not allocate info", name));
  }
  ~PngReader() { png_destroy_read_struct(&m_png, &m_info, nullptr); }
  PngReader(const PngReader&) = delete;
  PngReader& operator=(const PngReader&) = delete;

  png_structp png() const { return m_png; }
  png_infop info() const { return m_info; }
  PngIo* io() { return &m_io; }

  [[noreturn]] void fail(const char* stage) const {
    COHORT_FAIL(fmt::format("{}: cannot decode PNG ({}): {}", m_name, stage,
                            m_io.message[0] ? m_io.message : "libpng error"));
  }

 private:
  std::string m_name;
  PngIo m_io;
  png_structp m_png = nullptr;
  png_infop m_info = nullptr;
};

bool png_phase_header(png_structp png, png_infop info, PngIo* io, PngHeader* header) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, io, &png_read_from_memory);
  png_read_info(png, info);
  png_get_IHDR(png, info, &header->width, &header->height, &header->bit_depth, &header->color_type,
               &header->interlace, nullptr, nullptr);
  return true;
}

// The transformations of one decode mode.
struct PngTransforms {
  bool strip_16 = false, swap_16 = false, packing = false, palette_to_rgb = false;
  bool gray_1_2_4_to_8 = false, strip_alpha = false, gray_to_rgb = false, rgb_to_gray = false;
};

bool png_phase_transforms(png_structp png, png_infop info, const PngTransforms* t, size_t* rowbytes,
                          int* channels) {
  if (setjmp(png_jmpbuf(png))) return false;
  if (t->strip_16) png_set_strip_16(png);
  if (t->swap_16) png_set_swap(png);
  if (t->packing) png_set_packing(png);
  if (t->palette_to_rgb) png_set_palette_to_rgb(png);
  if (t->gray_1_2_4_to_8) png_set_expand_gray_1_2_4_to_8(png);
  if (t->strip_alpha) png_set_strip_alpha(png);
  if (t->gray_to_rgb) png_set_gray_to_rgb(png);
  if (t->rgb_to_gray) png_set_rgb_to_gray_fixed(png, 1, -1, -1);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *rowbytes = png_get_rowbytes(png, info);
  *channels = png_get_channels(png, info);
  return true;
}

bool png_phase_rows(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, nullptr);  // reads the trailing chunks: a file cut after IDAT fails
  return true;
}

// Rows [0, end) of a non-interlaced PNG, then no more: each row's filter needs the
// one above it, so the rows above a window are decoded too, but nothing below it.
bool png_phase_first_rows(png_structp png, png_bytepp rows, png_uint_32 end) {
  if (setjmp(png_jmpbuf(png))) return false;
  for (png_uint_32 y = 0; y < end; ++y)
    png_read_row(png, rows[y], nullptr);
  return true;
}

// Decodes into `out` (of `rowbytes` per row) after applying `t`; checks the row size.
// `row_end` < height (non-interlaced only): stop after that row (the caller reads
// no more; the trailing chunks are not read).
void png_decode_into(PngReader& reader, const PngHeader& h, const PngTransforms& t,
                     int want_channels, size_t want_bytes_per_sample, uint8_t* out,
                     png_uint_32 row_end = PNG_UINT_31_MAX) {
  size_t rowbytes = 0;
  int channels = 0;
  if (!png_phase_transforms(reader.png(), reader.info(), &t, &rowbytes, &channels))
    reader.fail("setting up the transformation");
  const size_t expected = size_t{h.width} * want_channels * want_bytes_per_sample;
  COHORT_CHECK(rowbytes == expected && channels == want_channels,
               fmt::format("internal: PNG rows of {} bytes and {} channels, expected {} and {}",
                           rowbytes, channels, expected, want_channels));
  std::vector<png_bytep> rows(h.height);
  for (png_uint_32 y = 0; y < h.height; ++y)
    rows[y] = out + size_t{y} * rowbytes;
  if (row_end < h.height && h.interlace == PNG_INTERLACE_NONE) {
    if (!png_phase_first_rows(reader.png(), rows.data(), row_end))
      reader.fail("reading the pixels");
    return;
  }
  if (!png_phase_rows(reader.png(), rows.data())) reader.fail("reading the pixels");
}

PngHeader png_header(PngReader& reader) {
  PngHeader h;
  if (!png_phase_header(reader.png(), reader.info(), reader.io(), &h))
    reader.fail("reading the header");
  return h;
}

int png_stored_channels(int color_type) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
      return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return 2;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_PALETTE:
      return 3;
    default:
      return 4;
  }
}

const char* png_color_name(int color_type) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
      return "grey";
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return "grey+alpha";
    case PNG_COLOR_TYPE_RGB:
      return "RGB";
    case PNG_COLOR_TYPE_PALETTE:
      return "palette";
    default:
      return "RGBA";
  }
}

// ---------------------------------------------------------------- JPEG

struct JpegErrorState {
  jpeg_error_mgr manager;  // first member: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {0};
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* state = reinterpret_cast<JpegErrorState*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, state->message);
  std::longjmp(state->jump, 1);
}

// Level -1 is a warning about corrupt data (e.g. a truncated file that libjpeg would
// pad with grey): an error for us. Trace messages (level >= 0) are dropped.
void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_on_error(cinfo);
}

void jpeg_init_errors(JpegErrorState* state) {
  jpeg_std_error(&state->manager);
  state->manager.error_exit = &jpeg_on_error;
  state->manager.emit_message = &jpeg_on_message;
}

struct JpegDecoder {
  jpeg_decompress_struct cinfo;
  JpegErrorState errors;
  bool created = false;
  ~JpegDecoder() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

bool jpeg_phase_header(JpegDecoder* d, const uint8_t* data, size_t size) {
  if (setjmp(d->errors.jump)) return false;
  jpeg_init_errors(&d->errors);
  d->cinfo.err = &d->errors.manager;
  jpeg_create_decompress(&d->cinfo);
  d->created = true;
  jpeg_mem_src(&d->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&d->cinfo, TRUE);
  return true;
}

bool jpeg_phase_start(JpegDecoder* d, J_COLOR_SPACE out_space) {
  if (setjmp(d->errors.jump)) return false;
  d->cinfo.out_color_space = out_space;
  jpeg_start_decompress(&d->cinfo);
  return true;
}

bool jpeg_phase_rows(JpegDecoder* d, uint8_t* out, size_t rowbytes) {
  if (setjmp(d->errors.jump)) return false;
  while (d->cinfo.output_scanline < d->cinfo.output_height) {
    JSAMPROW row = out + size_t{d->cinfo.output_scanline} * rowbytes;
    jpeg_read_scanlines(&d->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&d->cinfo);
  return true;
}

// Rows [r0, r1) and columns [c0, c1) (at least; libjpeg widens the columns to
// whole iMCUs and reports where they start): the rows above are skipped (entropy-
// decoded only), the columns outside never reach the inverse DCT, and decoding
// stops after row r1 - 1. Each decoded row lands at its place in `out`.
bool jpeg_phase_window(JpegDecoder* d, uint8_t* out, size_t rowbytes, int channels, JDIMENSION r0,
                       JDIMENSION r1, JDIMENSION c0, JDIMENSION c1) {
  if (setjmp(d->errors.jump)) return false;
  JDIMENSION x0 = 0;
  if (c1 - c0 < d->cinfo.output_width) {
    JDIMENSION width = c1 - c0;
    x0 = c0;
    jpeg_crop_scanline(&d->cinfo, &x0, &width);
  }
  if (r0 > 0) jpeg_skip_scanlines(&d->cinfo, r0);
  while (d->cinfo.output_scanline < r1) {
    JSAMPROW row = out + size_t{d->cinfo.output_scanline} * rowbytes + size_t{x0} * channels;
    jpeg_read_scanlines(&d->cinfo, &row, 1);
  }
  jpeg_abort_decompress(&d->cinfo);  // the rest is not wanted
  return true;
}

[[noreturn]] void jpeg_fail(const JpegDecoder& d, const std::string& name, const char* stage) {
  COHORT_FAIL(fmt::format("{}: cannot decode JPEG ({}): {}", name, stage,
                          d.errors.message[0] ? d.errors.message : "libjpeg error"));
}

ImageInfo jpeg_info(const uint8_t* data, size_t size, const std::string& name) {
  JpegDecoder d;
  if (!jpeg_phase_header(&d, data, size)) jpeg_fail(d, name, "reading the header");
  ImageInfo info;
  info.format = ImageFileFormat::jpeg;
  info.height = d.cinfo.image_height;
  info.width = d.cinfo.image_width;
  info.channels = d.cinfo.num_components;
  info.bit_depth = 8;
  return info;
}

// `window`: null for the whole image, else the part the caller reads.
Image8 jpeg_decode(const uint8_t* data, size_t size, int channels, const std::string& name,
                   const ImageWindow* window = nullptr) {
  JpegDecoder d;
  if (!jpeg_phase_header(&d, data, size)) jpeg_fail(d, name, "reading the header");
  const J_COLOR_SPACE stored = d.cinfo.jpeg_color_space;
  COHORT_CHECK(stored != JCS_CMYK && stored != JCS_YCCK,
               fmt::format("{}: CMYK JPEG images are not supported; convert it to RGB", name));
  if (channels == 0) channels = d.cinfo.num_components == 1 ? 1 : 3;
  if (!jpeg_phase_start(&d, channels == 1 ? JCS_GRAYSCALE : JCS_RGB))
    jpeg_fail(d, name, "starting decompression");
  COHORT_CHECK(d.cinfo.output_components == channels,
               fmt::format("internal: {}: libjpeg produced {} components, expected {}", name,
                           d.cinfo.output_components, channels));
  Image8 image;
  image.height = d.cinfo.output_height;
  image.width = d.cinfo.output_width;
  image.channels = channels;
  image.pixels.resize(image.bytes());
  const size_t rowbytes = size_t(image.width) * channels;
  if (window != nullptr) {
    // A margin around the window: libjpeg's fancy upsampling of subsampled chroma
    // treats the edges of a cropped or skipped region as image edges, so the
    // pixels next to them may differ from a full decode; those stay outside.
    constexpr int64_t kMargin = 16;
    const auto clamp = [](int64_t v, int64_t hi) { return std::clamp<int64_t>(v, 0, hi); };
    const auto r0 = static_cast<JDIMENSION>(clamp(window->row_begin - kMargin, image.height));
    const auto r1 = static_cast<JDIMENSION>(clamp(window->row_end + kMargin, image.height));
    const auto c0 = static_cast<JDIMENSION>(clamp(window->col_begin - kMargin, image.width));
    const auto c1 = static_cast<JDIMENSION>(clamp(window->col_end + kMargin, image.width));
    if (r0 < r1 && c0 < c1) {
      if (!jpeg_phase_window(&d, image.pixels.data(), rowbytes, channels, r0, r1, c0, c1))
        jpeg_fail(d, name, "reading the pixels");
      return image;
    }
  }
  if (!jpeg_phase_rows(&d, image.pixels.data(), rowbytes)) jpeg_fail(d, name, "reading the pixels");
  return image;
}

struct JpegEncoder {
  jpeg_compress_struct cinfo;
  JpegErrorState errors;
  bool created = false;
  unsigned char* buffer = nullptr;  // malloc'd by jpeg_mem_dest
  unsigned long size = 0;
  ~JpegEncoder() {
    if (created) jpeg_destroy_compress(&cinfo);
    std::free(buffer);
  }
};

bool jpeg_phase_encode(JpegEncoder* e, const uint8_t* pixels, int width, int height, int channels,
                       int quality) {
  if (setjmp(e->errors.jump)) return false;
  jpeg_init_errors(&e->errors);
  e->cinfo.err = &e->errors.manager;
  jpeg_create_compress(&e->cinfo);
  e->created = true;
  jpeg_mem_dest(&e->cinfo, &e->buffer, &e->size);
  e->cinfo.image_width = static_cast<JDIMENSION>(width);
  e->cinfo.image_height = static_cast<JDIMENSION>(height);
  e->cinfo.input_components = channels;
  e->cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&e->cinfo);
  jpeg_set_quality(&e->cinfo, quality, TRUE);
  jpeg_start_compress(&e->cinfo, TRUE);
  const size_t rowbytes = size_t(width) * channels;
  while (e->cinfo.next_scanline < e->cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(pixels) + size_t{e->cinfo.next_scanline} * rowbytes;
    jpeg_write_scanlines(&e->cinfo, &row, 1);
  }
  jpeg_finish_compress(&e->cinfo);
  return true;
}

// ---------------------------------------------------------------- PNG writing

struct PngSink {
  std::vector<uint8_t>* out = nullptr;
  char message[256] = {0};
};

void png_write_to_memory(png_structp png, png_bytep data, png_size_t count) {
  auto* sink = static_cast<PngSink*>(png_get_io_ptr(png));
  bool ok = true;
  try {
    sink->out->insert(sink->out->end(), data, data + count);
  } catch (...) {  // never let a C++ exception cross libpng's C frames
    ok = false;
  }
  if (!ok) png_error(png, "out of memory while encoding");
}

void png_flush_memory(png_structp) {}

void png_on_write_error(png_structp png, png_const_charp message) {
  auto* sink = static_cast<PngSink*>(png_get_error_ptr(png));
  std::snprintf(sink->message, sizeof(sink->message), "%s", message);
  png_longjmp(png, 1);
}

struct PngWriter {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngWriter() { png_destroy_write_struct(&png, &info); }
};

bool png_phase_write(png_structp png, png_infop info, PngSink* sink, png_uint_32 width,
                     png_uint_32 height, int bit_depth, int color_type, int level,
                     png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, sink, &png_write_to_memory, &png_flush_memory);
  png_set_IHDR(png, info, width, height, bit_depth, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, level);
  // Only the Sub and Up row filters: libpng's adaptive choice mostly picks Paeth,
  // whose reconstruction is the slowest part of decoding after inflate. Measured
  // on four real photographs resized to 2048x1024 (zlib level 3, libpng 1.6):
  // decoding 22-24% faster (e.g. 38.1 -> 29.8 ms), files 3% smaller to 4% larger.
  // The loader decodes every frame of every epoch; the encoder runs once.
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB | PNG_FILTER_UP);
  png_write_info(png, info);
  if (bit_depth == 16) png_set_swap(png);  // our samples are little-endian in memory
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

std::vector<uint8_t> png_encode(const uint8_t* pixels, int64_t width, int64_t height, int channels,
                                int bit_depth, int level) {
  int color_type = PNG_COLOR_TYPE_GRAY;
  if (channels == 2) color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
  if (channels == 3) color_type = PNG_COLOR_TYPE_RGB;
  if (channels == 4) color_type = PNG_COLOR_TYPE_RGB_ALPHA;
  COHORT_CHECK(channels >= 1 && channels <= 4 && width > 0 && height > 0,
               fmt::format("encode PNG: bad image {}x{}x{}", height, width, channels));
  COHORT_CHECK(level >= 0 && level <= 9, fmt::format("encode PNG: level {} not in 0..9", level));
  std::vector<uint8_t> out;
  PngSink sink;
  sink.out = &out;
  PngWriter w;
  w.png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, &png_on_write_error, &png_on_warning);
  COHORT_CHECK(w.png != nullptr, "encode PNG: libpng could not allocate a writer");
  w.info = png_create_info_struct(w.png);
  COHORT_CHECK(w.info != nullptr, "encode PNG: libpng could not allocate info");
  const size_t rowbytes = size_t(width) * channels * (bit_depth / 8);
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y)
    rows[y] = const_cast<uint8_t*>(pixels) + static_cast<size_t>(y) * rowbytes;
  if (!png_phase_write(w.png, w.info, &sink, static_cast<png_uint_32>(width),
                       static_cast<png_uint_32>(height), bit_depth, color_type, level, rows.data()))
    COHORT_FAIL(fmt::format("encode PNG ({}x{}x{}, {} bit): {}", height, width, channels, bit_depth,
                            sink.message));
  return out;
}

}  // namespace

ImageInfo read_image_info(const uint8_t* data, size_t size, const std::string& name) {
  const auto format = sniff_image_format(data, size);
  COHORT_CHECK(format.has_value(),
               fmt::format("{}: not a PNG or JPEG file ({} bytes, unknown signature)", name, size));
  if (*format == ImageFileFormat::jpeg) return jpeg_info(data, size, name);
  PngReader reader(data, size, name);
  const PngHeader h = png_header(reader);
  ImageInfo info;
  info.format = ImageFileFormat::png;
  info.height = h.height;
  info.width = h.width;
  info.channels = png_stored_channels(h.color_type);
  info.bit_depth = h.bit_depth;
  info.palette = h.color_type == PNG_COLOR_TYPE_PALETTE;
  return info;
}

ImageInfo read_image_info_file(const std::string& path) {
  // Headers sit in the first bytes, but a JPEG may carry large EXIF blocks before its
  // SOF marker; reading the whole file keeps this simple and correct.
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return read_image_info(bytes.data(), bytes.size(), path);
}

namespace {

Image8 decode_any(const uint8_t* data, size_t size, int channels, const std::string& name,
                  const ImageWindow* window) {
  COHORT_CHECK(channels == 0 || channels == 1 || channels == 3,
               fmt::format("{}: decode to {} channels (1, 3 or 0 = as stored)", name, channels));
  const auto format = sniff_image_format(data, size);
  COHORT_CHECK(format.has_value(),
               fmt::format("{}: not a PNG or JPEG file ({} bytes, unknown signature)", name, size));
  if (*format == ImageFileFormat::jpeg) return jpeg_decode(data, size, channels, name, window);

  PngReader reader(data, size, name);
  const PngHeader h = png_header(reader);
  const bool color = (h.color_type & PNG_COLOR_MASK_COLOR) != 0;
  const bool alpha = (h.color_type & PNG_COLOR_MASK_ALPHA) != 0;
  if (channels == 0) channels = color ? 3 : 1;
  PngTransforms t;
  t.strip_16 = h.bit_depth == 16;
  t.palette_to_rgb = h.color_type == PNG_COLOR_TYPE_PALETTE;
  t.gray_1_2_4_to_8 = !color && h.bit_depth < 8;
  t.strip_alpha = alpha;
  t.gray_to_rgb = !color && channels == 3;
  t.rgb_to_gray = color && channels == 1;
  Image8 image;
  image.height = h.height;
  image.width = h.width;
  image.channels = channels;
  image.pixels.resize(image.bytes());
  png_uint_32 row_end = PNG_UINT_31_MAX;
  if (window != nullptr)
    row_end = static_cast<png_uint_32>(std::clamp<int64_t>(window->row_end, 0, h.height));
  png_decode_into(reader, h, t, channels, 1, image.pixels.data(), row_end);
  return image;
}

}  // namespace

Image8 decode_image(const uint8_t* data, size_t size, int channels, const std::string& name) {
  return decode_any(data, size, channels, name, nullptr);
}

Image8 decode_image_window(const uint8_t* data, size_t size, int channels, const std::string& name,
                           const ImageWindow& window) {
  return decode_any(data, size, channels, name, &window);
}

Image8 read_image_file(const std::string& path, int channels) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), channels, path);
}

Image8 decode_png_label(const uint8_t* data, size_t size, const std::string& name) {
  COHORT_CHECK(sniff_image_format(data, size) == ImageFileFormat::png,
               fmt::format("{}: a label image must be a PNG file", name));
  PngReader reader(data, size, name);
  const PngHeader h = png_header(reader);
  COHORT_CHECK((h.color_type == PNG_COLOR_TYPE_GRAY || h.color_type == PNG_COLOR_TYPE_PALETTE) &&
                   h.bit_depth <= 8,
               fmt::format("{}: a label image must hold 8-bit grey label ids (or palette "
                           "indices); this one is {} with {} bits per sample",
                           name, png_color_name(h.color_type), h.bit_depth));
  PngTransforms t;
  t.packing = h.bit_depth < 8;  // unpack 1/2/4-bit values without rescaling them
  Image8 image;
  image.height = h.height;
  image.width = h.width;
  image.channels = 1;
  image.pixels.resize(image.bytes());
  png_decode_into(reader, h, t, 1, 1, image.pixels.data());
  return image;
}

Image16 decode_png16(const uint8_t* data, size_t size, const std::string& name) {
  COHORT_CHECK(sniff_image_format(data, size) == ImageFileFormat::png,
               fmt::format("{}: expected a 16-bit PNG file", name));
  PngReader reader(data, size, name);
  const PngHeader h = png_header(reader);
  COHORT_CHECK(h.color_type == PNG_COLOR_TYPE_GRAY && h.bit_depth == 16,
               fmt::format("{}: expected a 16-bit single-channel PNG; this one is {} with {} "
                           "bits per sample",
                           name, png_color_name(h.color_type), h.bit_depth));
  PngTransforms t;
  t.swap_16 = true;  // PNG stores big-endian samples; this host is little-endian
  Image16 image;
  image.height = h.height;
  image.width = h.width;
  image.pixels.resize(static_cast<size_t>(image.height * image.width));
  png_decode_into(reader, h, t, 1, 2, reinterpret_cast<uint8_t*>(image.pixels.data()));
  return image;
}

std::vector<uint8_t> encode_png(const Image8& image, int level) {
  COHORT_CHECK(image.pixels.size() == image.bytes(),
               fmt::format("encode PNG: {} pixel bytes for a {}x{}x{} image", image.pixels.size(),
                           image.height, image.width, image.channels));
  return png_encode(image.pixels.data(), image.width, image.height,
                    static_cast<int>(image.channels), 8, level);
}

std::vector<uint8_t> encode_png16(const Image16& image, int level) {
  COHORT_CHECK(image.pixels.size() == static_cast<size_t>(image.height * image.width),
               fmt::format("encode 16-bit PNG: {} samples for a {}x{} image", image.pixels.size(),
                           image.height, image.width));
  return png_encode(reinterpret_cast<const uint8_t*>(image.pixels.data()), image.width,
                    image.height, 1, 16, level);
}

std::vector<uint8_t> encode_jpeg(const Image8& image, int quality) {
  COHORT_CHECK((image.channels == 1 || image.channels == 3) && image.width > 0 &&
                   image.height > 0 && image.pixels.size() == image.bytes(),
               fmt::format("encode JPEG: bad image {}x{}x{} with {} bytes (1 or 3 channels)",
                           image.height, image.width, image.channels, image.pixels.size()));
  COHORT_CHECK(quality >= 1 && quality <= 100,
               fmt::format("encode JPEG: quality {} not in 1..100", quality));
  JpegEncoder e;
  if (!jpeg_phase_encode(&e, image.pixels.data(), static_cast<int>(image.width),
                         static_cast<int>(image.height), static_cast<int>(image.channels), quality))
    COHORT_FAIL(fmt::format("encode JPEG ({}x{}x{}): {}", image.height, image.width, image.channels,
                            e.errors.message));
  return std::vector<uint8_t>(e.buffer, e.buffer + e.size);
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  COHORT_CHECK(fd >= 0, fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::vector<uint8_t> bytes;
  uint8_t buffer[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int err = errno;
      ::close(fd);
      COHORT_FAIL(fmt::format("{}: read failed: {}", path, std::strerror(err)));
    }
    if (got == 0) break;
    bytes.insert(bytes.end(), buffer, buffer + got);
  }
  ::close(fd);
  return bytes;
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  COHORT_CHECK(fd >= 0, fmt::format("{}: cannot create: {}", path, std::strerror(errno)));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      COHORT_FAIL(fmt::format("{}: write failed: {}", path, std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  COHORT_CHECK(::close(fd) == 0, fmt::format("{}: close failed: {}", path, std::strerror(errno)));
}

}  // namespace cohort::data
