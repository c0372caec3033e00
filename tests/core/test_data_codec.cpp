// PNG/JPEG codec, checksums (Fletcher-32 against HDF5's own) and image resizing.
#include <gtest/gtest.h>
#include <hdf5.h>
// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>
#include <cstddef>
#include <cstdio>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "core/error.hpp"
#include "data/checksum.hpp"
#include "data/image_codec.hpp"
#include "data/image_resize.hpp"
#include "tests/core/data_test_helpers.hpp"
#include "tests/support/temp_dir.hpp"

namespace cohort::data {
namespace {

using namespace cohort::data::testing;

Image8 gradient(int64_t h, int64_t w, int64_t c) {
  Image8 img{h, w, c, std::vector<uint8_t>(static_cast<size_t>(h * w * c))};
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k)
        img.pixels[(y * w + x) * c + k] = static_cast<uint8_t>((x * 7 + y * 3 + k * 50) % 256);
  return img;
}

TEST(DataCodec, PngRoundTripsGreyAndRgbExactly) {
  for (int64_t c : {1, 3}) {
    const Image8 img = gradient(13, 21, c);
    const std::vector<uint8_t> png = encode_png(img, 6);
    EXPECT_EQ(sniff_image_format(png.data(), png.size()), ImageFileFormat::png);
    const ImageInfo info = read_image_info(png.data(), png.size(), "mem.png");
    EXPECT_EQ(info.height, 13);
    EXPECT_EQ(info.width, 21);
    EXPECT_EQ(info.channels, c);
    const Image8 back = decode_image(png.data(), png.size(), 0, "mem.png");
    EXPECT_EQ(back.channels, c);
    EXPECT_EQ(back.pixels, img.pixels);
  }
  // Grey decoded as RGB repeats the value; RGB decoded as grey is a weighted mean.
  const Image8 grey = gradient(4, 5, 1);
  const std::vector<uint8_t> png = encode_png(grey);
  const Image8 rgb = decode_image(png.data(), png.size(), 3, "g.png");
  for (size_t p = 0; p < grey.pixels.size(); ++p)
    for (int k = 0; k < 3; ++k)
      ASSERT_EQ(rgb.pixels[p * 3 + k], grey.pixels[p]);
}

// The encoder limits itself to the Sub and Up row filters (fast to reconstruct
// when the loader decodes); a photograph-like image makes it use both.
TEST(DataCodec, PngImagesUseOnlyTheFastRowFilters) {
  Image8 img{64, 96, 3, pattern_bytes(64 * 96 * 3, 5)};
  for (int64_t y = 0; y < 32; ++y)  // smooth upper half, noisy lower half
    for (int64_t x = 0; x < 96 * 3; ++x)
      img.pixels[static_cast<size_t>(y * 96 * 3 + x)] = static_cast<uint8_t>(x / 3 + 2 * y);
  const std::set<int> filters = png_row_filters(encode_png(img, 3), 96 * 3, 64);
  for (int f : filters)
    EXPECT_TRUE(f == 1 || f == 2) << "row filter " << f;
  EXPECT_FALSE(filters.empty());
}

// A colour JPEG with luma sampling factors h x v (chroma 1 x 1), optionally
// progressive: the layouts ImageFolder stores verbatim from users' files.
std::vector<uint8_t> jpeg_with_sampling(const Image8& img, int h, int v, bool progressive) {
  jpeg_compress_struct c;
  jpeg_error_mgr errors;
  c.err = jpeg_std_error(&errors);
  jpeg_create_compress(&c);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buffer, &size);
  c.image_width = static_cast<JDIMENSION>(img.width);
  c.image_height = static_cast<JDIMENSION>(img.height);
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 90, TRUE);
  c.comp_info[0].h_samp_factor = h;
  c.comp_info[0].v_samp_factor = v;
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(img.pixels.data()) + c.next_scanline * img.width * 3;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> out(buffer, buffer + size);
  std::free(buffer);
  return out;
}

// decode_image_window gives decode_image's pixels inside any window, for PNG and
// for JPEG with subsampled chroma (whose upsampling reaches across crop edges:
// 4:2:0, 4:2:2, 4:4:0, progressive too), on an odd-sized image so that windows
// cut through iMCUs and reach the borders.
TEST(DataCodec, WindowedDecodeEqualsFullDecodeInsideTheWindow) {
  const int64_t H = 203, W = 317;
  for (int64_t c : {1, 3}) {
    Image8 img{H, W, c, pattern_bytes(static_cast<size_t>(H * W * c), 9)};
    for (size_t i = 0; i < img.pixels.size(); ++i)  // smooth structure under the noise
      img.pixels[i] = static_cast<uint8_t>(img.pixels[i] / 4 + (i / (W * c)) % 128 + (i % 97));
    std::vector<std::pair<std::string, std::vector<uint8_t>>> files = {
        {"png", encode_png(img, 3)}, {"jpeg", encode_jpeg(img, 90)}};
    if (c == 3) {
      files.emplace_back("jpeg 4:2:2", jpeg_with_sampling(img, 2, 1, false));
      files.emplace_back("jpeg 4:4:0", jpeg_with_sampling(img, 1, 2, false));
      files.emplace_back("jpeg 4:4:4", jpeg_with_sampling(img, 1, 1, false));
      files.emplace_back("jpeg 4:2:0 progressive", jpeg_with_sampling(img, 2, 2, true));
    }
    for (const auto& [format, bytes] : files) {
      const Image8 full = decode_image(bytes.data(), bytes.size(), static_cast<int>(c), "full");
      std::vector<ImageWindow> windows = {
          {0, H, 0, W}, {0, 1, 0, 1}, {H - 1, H, W - 1, W}, {17, 18, 0, W}, {0, H, 100, 101}};
      uint32_t x = 12345;
      auto next = [&](int64_t n) {
        x = x * 1664525u + 1013904223u;
        return static_cast<int64_t>((x >> 8) % static_cast<uint32_t>(n));
      };
      for (int k = 0; k < 40; ++k) {
        const int64_t r0 = next(H), c0 = next(W);
        windows.push_back({r0, r0 + 1 + next(H - r0), c0, c0 + 1 + next(W - c0)});
      }
      for (const ImageWindow& w : windows) {
        SCOPED_TRACE(::testing::Message()
                     << format << " " << c << " channels, rows [" << w.row_begin << ", "
                     << w.row_end << ") cols [" << w.col_begin << ", " << w.col_end << ")");
        const Image8 part =
            decode_image_window(bytes.data(), bytes.size(), static_cast<int>(c), "part", w);
        ASSERT_EQ(part.height, H);
        ASSERT_EQ(part.width, W);
        int64_t differing = 0;
        for (int64_t y = w.row_begin; y < w.row_end; ++y)
          for (int64_t i = w.col_begin * c; i < w.col_end * c; ++i) {
            const size_t at = static_cast<size_t>(y * W * c + i);
            differing += part.pixels[at] != full.pixels[at];
          }
        EXPECT_EQ(differing, 0);
      }
    }
  }
}

TEST(DataCodec, LabelPngsDecodeVerbatimAndColourIsRefused) {
  Image8 ids{3, 4, 1, {0, 7, 26, 33, 255, 1, 2, 3, 40, 41, 42, 43}};
  const std::vector<uint8_t> png = encode_png(ids);
  EXPECT_EQ(decode_png_label(png.data(), png.size(), "l.png").pixels, ids.pixels);
  const std::vector<uint8_t> colour = encode_png(gradient(3, 4, 3));
  try {
    decode_png_label(colour.data(), colour.size(), "/data/x_labelIds.png");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "/data/x_labelIds.png")) << e.what();
    EXPECT_TRUE(contains(e.what(), "RGB")) << e.what();
  }
}

TEST(DataCodec, SixteenBitPngRoundTrips) {
  Image16 d{2, 3, {0, 1, 2, 256, 40000, 65535}};
  const std::vector<uint8_t> png = encode_png16(d);
  const ImageInfo info = read_image_info(png.data(), png.size(), "d.png");
  EXPECT_EQ(info.bit_depth, 16);
  EXPECT_EQ(decode_png16(png.data(), png.size(), "d.png").pixels, d.pixels);
  const std::vector<uint8_t> eight = encode_png(gradient(2, 3, 1));
  EXPECT_THROW(decode_png16(eight.data(), eight.size(), "e.png"), Error);
}

TEST(DataCodec, JpegRoundTripIsClose) {
  Image8 img{32, 48, 3, std::vector<uint8_t>(32 * 48 * 3)};  // smooth: no wrap-around edges
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 48; ++x)
      for (int k = 0; k < 3; ++k)
        img.pixels[(y * 48 + x) * 3 + k] = uint8_t(x * 3 + y * 2 + k * 20);
  const std::vector<uint8_t> jpg = encode_jpeg(img, 95);
  EXPECT_EQ(sniff_image_format(jpg.data(), jpg.size()), ImageFileFormat::jpeg);
  const Image8 back = decode_image(jpg.data(), jpg.size(), 3, "m.jpg");
  ASSERT_EQ(back.pixels.size(), img.pixels.size());
  double err = 0;
  for (size_t i = 0; i < img.pixels.size(); ++i)
    err += std::abs(back.pixels[i] - img.pixels[i]);
  EXPECT_LT(err / img.pixels.size(), 2.0);
  EXPECT_EQ(decode_image(jpg.data(), jpg.size(), 1, "m.jpg").channels, 1);
}

TEST(DataCodec, CorruptFilesAreErrorsNamingTheSource) {
  std::vector<uint8_t> png = encode_png(gradient(16, 16, 3));
  std::vector<uint8_t> cut(png.begin(), png.begin() + static_cast<long>(png.size() / 2));
  try {
    decode_image(cut.data(), cut.size(), 3, "shard.h5 sample 4");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "shard.h5 sample 4: cannot decode PNG")) << e.what();
  }
  png[png.size() / 2] ^= 0xff;  // inside IDAT: its CRC no longer matches
  EXPECT_THROW(decode_image(png.data(), png.size(), 3, "x.png"), Error);
  std::vector<uint8_t> jpg = encode_jpeg(gradient(64, 64, 3), 90);
  jpg.resize(jpg.size() * 2 / 3);  // libjpeg would pad this with grey
  try {
    decode_image(jpg.data(), jpg.size(), 3, "y.jpg");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "y.jpg: cannot decode JPEG")) << e.what();
  }
  const std::vector<uint8_t> text{'h', 'e', 'l', 'l', 'o'};
  EXPECT_THROW(decode_image(text.data(), text.size(), 3, "z"), Error);
  EXPECT_THROW(read_image_file("/nonexistent/file.png", 3), Error);
}

// Our Fletcher-32 must equal the checksum HDF5 stores after each chunk: write
// chunks through HDF5's filter, read them back raw with H5Dread_chunk.
TEST(DataChecksum, Fletcher32MatchesWhatHdf5Stores) {
  cohort::testing::TempDir tmp;
  const std::string path = tmp.file("f.h5");
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  for (hsize_t len : {1ull, 2ull, 3ull, 511ull, 512ull, 513ull, 719ull, 720ull, 721ull, 4097ull,
                      100003ull, (1ull << 20) + 1}) {
    for (int fill : {-1, 0xff, 0}) {  // -1: pattern; all-0xff exercises the 0xffff fold
      std::vector<uint8_t> data = fill < 0 ? pattern_bytes(len, static_cast<uint32_t>(len))
                                           : std::vector<uint8_t>(len, uint8_t(fill));
      const hid_t space = H5Screate_simple(1, &len, nullptr);
      const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
      H5Pset_chunk(dcpl, 1, &len);
      H5Pset_fletcher32(dcpl);
      const std::string name = "d" + std::to_string(len) + "_" + std::to_string(fill);
      const hid_t d =
          H5Dcreate2(f, name.c_str(), H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
      ASSERT_GE(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), 0);
      ASSERT_GE(H5Dflush(d), 0);
      hsize_t stored = 0, origin = 0;
      ASSERT_GE(H5Dget_chunk_storage_size(d, &origin, &stored), 0);
      ASSERT_EQ(stored, len + 4);
      std::vector<uint8_t> raw(stored);
      uint32_t mask = 0;
      ASSERT_GE(H5Dread_chunk(d, H5P_DEFAULT, &origin, &mask, raw.data()), 0);
      const uint32_t hdf5 = uint32_t(raw[len]) | uint32_t(raw[len + 1]) << 8 |
                            uint32_t(raw[len + 2]) << 16 | uint32_t(raw[len + 3]) << 24;
      EXPECT_EQ(hdf5_fletcher32(data.data(), len), hdf5) << "length " << len << " fill " << fill;
      H5Dclose(d);
      H5Pclose(dcpl);
      H5Sclose(space);
    }
  }
  H5Fclose(f);
}

TEST(DataChecksum, Crc32AndItsHexForm) {
  const std::string text = "123456789";
  EXPECT_EQ(crc32_bytes(text.data(), text.size()), 0xcbf43926u);  // the standard check value
  EXPECT_EQ(crc32_hex(0xcbf43926u), "cbf43926");
  EXPECT_EQ(parse_crc32_hex("CBF43926", "here"), 0xcbf43926u);
  EXPECT_THROW(parse_crc32_hex("xyz", "here"), Error);
}

TEST(DataResize, ShorterSideAndAntialiasedAverages) {
  int64_t h = 0, w = 0;
  shorter_side_size(480, 640, 240, h, w);
  EXPECT_EQ(h, 240);
  EXPECT_EQ(w, 320);
  shorter_side_size(101, 50, 25, h, w);
  EXPECT_EQ(w, 25);
  EXPECT_EQ(h, 51);  // 50.5 rounds away from zero
  Image8 flat{9, 7, 3, std::vector<uint8_t>(9 * 7 * 3, 77)};
  const Image8 up = resize_image(flat, 20, 15);
  for (uint8_t v : up.pixels)
    ASSERT_EQ(v, 77);
  // A one-pixel checkerboard halved: every output pixel averages black and white.
  Image8 board{8, 8, 1, std::vector<uint8_t>(64)};
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x)
      board.pixels[y * 8 + x] = (x + y) % 2 ? 255 : 0;
  const Image8 half = resize_image(board, 4, 4);
  for (uint8_t v : half.pixels)
    EXPECT_NEAR(v, 127.5, 20) << "aliasing";
}

}  // namespace
}  // namespace cohort::data
