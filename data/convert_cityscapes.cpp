// Cityscapes -> shards (see convert.hpp for the layout and the depth formula).
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "data/cityscapes_labels.hpp"
#include "data/convert.hpp"
#include "data/convert_common.hpp"
#include "data/parallel.hpp"
#include "data/shard_index.hpp"

namespace cohort::data {
namespace {

namespace fs = std::filesystem;

constexpr const char* kImageSuffix = "_leftImg8bit.png";

struct Frame {
  std::string stem;  // "<city>_<seq>_<frame>"
  std::string image, label, disparity, camera;
};

struct Camera {
  double baseline = 0, fx = 0;
};

std::string sub_path(const std::string& root, const std::string& type, const std::string& split,
                     const std::string& city, const std::string& file) {
  return (fs::path(root) / type / split / city / file).string();
}

std::vector<Frame> find_frames(const CityscapesOptions& o, bool labels, bool depth) {
  const fs::path images = fs::path(o.root) / "leftImg8bit" / o.split;
  COHORT_CHECK(fs::is_directory(images),
               fmt::format("Cityscapes: {} is not a directory (expected <root>/leftImg8bit/<split>/"
                           "<city>/*{})",
                           images.string(), kImageSuffix));
  std::vector<Frame> frames;
  for (const fs::directory_entry& city : fs::directory_iterator(images)) {
    if (!city.is_directory()) continue;
    const std::string city_name = city.path().filename().string();
    for (const fs::directory_entry& file : fs::directory_iterator(city.path())) {
      const std::string name = file.path().filename().string();
      if (!file.is_regular_file() || name.size() <= std::strlen(kImageSuffix) ||
          name.compare(name.size() - std::strlen(kImageSuffix), std::string::npos, kImageSuffix) !=
              0)
        continue;
      Frame f;
      f.stem = name.substr(0, name.size() - std::strlen(kImageSuffix));
      f.image = file.path().string();
      if (labels)
        f.label = sub_path(o.root, o.annotation, o.split, city_name,
                           fmt::format("{}_{}_labelIds.png", f.stem, o.annotation));
      if (depth) {
        f.disparity = sub_path(o.root, "disparity", o.split, city_name, f.stem + "_disparity.png");
        f.camera = sub_path(o.root, "camera", o.split, city_name, f.stem + "_camera.json");
      }
      frames.push_back(std::move(f));
    }
  }
  std::sort(frames.begin(), frames.end(),
            [](const Frame& a, const Frame& b) { return a.image < b.image; });
  return frames;
}

Camera read_camera(const std::string& path) {
  std::ifstream in(path);
  COHORT_CHECK(in.good(), fmt::format("{}: cannot open the camera file", path));
  nlohmann::json j;
  try {
    in >> j;
    Camera c;
    c.baseline = j.at("extrinsic").at("baseline").get<double>();
    c.fx = j.at("intrinsic").at("fx").get<double>();
    COHORT_CHECK(c.baseline > 0 && c.fx > 0,
                 fmt::format("{}: extrinsic.baseline {} and intrinsic.fx {} must be > 0", path,
                             c.baseline, c.fx));
    return c;
  } catch (const nlohmann::json::exception& e) {
    COHORT_FAIL(
        fmt::format("{}: not a Cityscapes camera file (needs extrinsic.baseline and "
                    "intrinsic.fx): {}",
                    path, e.what()));
  }
}

// Checks one frame's files without decoding pixels; returns its problems.
std::vector<std::string> check_frame(const Frame& f, int64_t& height, int64_t& width) {
  std::vector<std::string> problems;
  height = width = 0;
  try {
    const ImageInfo info = detail::read_image_header(f.image);
    height = info.height;
    width = info.width;
  } catch (const Error& e) {
    problems.push_back(detail::plain_message(e.what()));
    return problems;
  }
  auto check_size = [&](const std::string& path, const ImageInfo& info, const char* what) {
    if (info.height != height || info.width != width)
      problems.push_back(fmt::format("{}: {} is {}x{} (WxH) but the image {} is {}x{}", path, what,
                                     info.width, info.height, f.image, width, height));
  };
  if (!f.label.empty()) {
    if (!fs::exists(f.label)) {
      problems.push_back(fmt::format("{}: missing label file for {}", f.label, f.image));
    } else {
      try {
        const ImageInfo info = detail::read_image_header(f.label);
        if (info.format != ImageFileFormat::png || info.bit_depth > 8 ||
            !(info.channels == 1 || info.palette))
          problems.push_back(
              fmt::format("{}: labelIds must be an 8-bit single-channel PNG", f.label));
        check_size(f.label, info, "the label map");
      } catch (const Error& e) {
        problems.push_back(detail::plain_message(e.what()));
      }
    }
  }
  if (!f.disparity.empty()) {
    if (!fs::exists(f.disparity)) {
      problems.push_back(fmt::format("{}: missing disparity file for {}", f.disparity, f.image));
    } else {
      try {
        const ImageInfo info = detail::read_image_header(f.disparity);
        if (info.format != ImageFileFormat::png || info.bit_depth != 16 || info.channels != 1)
          problems.push_back(
              fmt::format("{}: disparity must be a 16-bit single-channel PNG", f.disparity));
        check_size(f.disparity, info, "the disparity map");
      } catch (const Error& e) {
        problems.push_back(detail::plain_message(e.what()));
      }
    }
    if (!fs::exists(f.camera)) {
      problems.push_back(fmt::format("{}: missing camera file for {}", f.camera, f.image));
    } else {
      try {
        read_camera(f.camera);
      } catch (const Error& e) {
        problems.push_back(detail::plain_message(e.what()));
      }
    }
  }
  return problems;
}

}  // namespace

Manifest convert_cityscapes(const CityscapesOptions& o) {
  COHORT_CHECK(o.kind != TaskKind::classification,
               "Cityscapes: kind must be segmentation, depth or multitask");
  COHORT_CHECK(!o.keep_png || o.encoding == ImageEncoding::png,
               fmt::format("Cityscapes: --keep-png keeps the source PNG files, so it needs "
                           "--encoding png (got {})",
                           to_string(o.encoding)));
  const bool labels = has_label_map(o.kind), depth = has_depth(o.kind);
  std::vector<Frame> frames = find_frames(o, labels, depth);
  COHORT_CHECK(
      !frames.empty(),
      fmt::format("Cityscapes: no *{} files under {}: the split '{}' is empty", kImageSuffix,
                  (fs::path(o.root) / "leftImg8bit" / o.split).string(), o.split));
  if (o.limit > 0 && static_cast<int64_t>(frames.size()) > o.limit)
    frames.resize(static_cast<size_t>(o.limit));
  const int64_t n = static_cast<int64_t>(frames.size());

  // A whole missing annotation folder is one problem, not thousands.
  std::vector<std::string> problems;
  auto need_dir = [&](const std::string& type) {
    const fs::path dir = fs::path(o.root) / type / o.split;
    if (!fs::is_directory(dir))
      problems.push_back(fmt::format("{}: missing directory (needed for {} files of {} images)",
                                     dir.string(), type, n));
  };
  if (labels) need_dir(o.annotation);
  if (depth) {
    need_dir("disparity");
    need_dir("camera");
  }
  if (!problems.empty()) detail::throw_problems(fmt::format("Cityscapes in {}", o.root), problems);

  // Pass 1: every file exists, headers agree on sizes, cameras parse.
  std::vector<std::vector<std::string>> frame_problems(static_cast<size_t>(n));
  std::vector<int64_t> heights(static_cast<size_t>(n)), widths(static_cast<size_t>(n));
  parallel_for(n, o.threads, [&](int64_t i) {
    frame_problems[i] = check_frame(frames[i], heights[i], widths[i]);
  });
  for (int64_t i = 0; i < n; ++i) {
    problems.insert(problems.end(), frame_problems[i].begin(), frame_problems[i].end());
    if (frame_problems[i].empty() && (heights[i] != heights[0] || widths[i] != widths[0]))
      problems.push_back(fmt::format(
          "{}: image is {}x{} (WxH) but {} is {}x{}; a split must have "
          "one image size",
          frames[i].image, widths[i], heights[i], frames[0].image, widths[0], heights[0]));
  }
  if (!problems.empty())
    detail::throw_problems(fmt::format("Cityscapes {} split in {}", o.split, o.root), problems);

  DatasetSpec spec;
  spec.kind = o.kind;
  spec.split = o.split;
  spec.image_encoding = o.encoding;
  spec.channels = 3;
  spec.height = heights[0];
  spec.width = widths[0];
  if (labels) spec.classes = cityscapes_train_classes();
  spec.mean = o.mean;
  spec.std = o.std;
  spec.depth_dtype = o.depth_dtype;
  spec.source = fmt::format("cityscapes root={} split={} annotation={} kind={}", o.root, o.split,
                            o.annotation, to_string(o.kind));
  ShardSetWriter writer(o.out_dir, spec, o.writer);
  const std::array<uint8_t, 256> to_train = cityscapes_id_to_train_id();

  // Pass 2: decode, map, compute depth; with keep_png the image's PNG bytes are
  // kept verbatim (decoding still proves the file is sound), else the writer
  // re-encodes the decoded pixels.
  detail::write_in_order(
      writer, n, o.threads,
      [&](int64_t i) {
        const Frame& f = frames[i];
        SampleRecord r;
        r.name = f.stem;
        std::vector<uint8_t> bytes = read_file_bytes(f.image);
        r.image = decode_image(bytes.data(), bytes.size(), 3, f.image);
        if (o.keep_png && o.encoding == ImageEncoding::png &&
            sniff_image_format(bytes.data(), bytes.size()) == ImageFileFormat::png)
          r.encoded = std::move(bytes);
        const size_t pixels = static_cast<size_t>(r.image.height * r.image.width);
        if (labels) {
          const std::vector<uint8_t> label_bytes = read_file_bytes(f.label);
          const Image8 ids = decode_png_label(label_bytes.data(), label_bytes.size(), f.label);
          r.label.resize(pixels);
          for (size_t p = 0; p < pixels; ++p)
            r.label[p] = to_train[ids.pixels[p]];
        }
        if (depth) {
          const Camera cam = read_camera(f.camera);
          const std::vector<uint8_t> disp_bytes = read_file_bytes(f.disparity);
          const Image16 disp = decode_png16(disp_bytes.data(), disp_bytes.size(), f.disparity);
          r.depth.resize(pixels);
          for (size_t p = 0; p < pixels; ++p) {
            const uint16_t v = disp.pixels[p];
            const double d = (static_cast<double>(v) - 1.0) / 256.0;
            r.depth[p] = v > 0 && d > 0 ? static_cast<float>(cam.baseline * cam.fx / d) : 0.0f;
          }
        }
        return r;
      },
      o.log);
  return detail::finish_set(writer, o);
}

}  // namespace cohort::data
