// ImageFolder tree -> classification shards (see convert.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/error.hpp"
#include "data/convert.hpp"
#include "data/convert_common.hpp"
#include "data/image_resize.hpp"
#include "data/parallel.hpp"
#include "data/shard_index.hpp"

namespace cohort::data {
namespace {

namespace fs = std::filesystem;

bool is_image_name(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  for (char& c : ext)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == "jpg" || ext == "jpeg" || ext == "png";
}

struct Item {
  std::string path, name;  // name: "<class>/<file>"
  int32_t class_id = 0;
};

}  // namespace

Manifest convert_imagefolder(const ImageFolderOptions& o) {
  COHORT_CHECK(
      fs::is_directory(o.root),
      fmt::format("ImageFolder: {} is not a directory (expected <root>/<class>/<image>)", o.root));
  COHORT_CHECK(o.channels == 1 || o.channels == 3,
               fmt::format("ImageFolder: channels {} (1 or 3)", o.channels));
  COHORT_CHECK(o.resize_shorter >= 0, "ImageFolder: resize_shorter must be >= 0");
  std::vector<std::string> class_names;
  for (const fs::directory_entry& e : fs::directory_iterator(o.root)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && !name.empty() && name[0] != '.') class_names.push_back(name);
  }
  std::sort(class_names.begin(), class_names.end());
  COHORT_CHECK(!class_names.empty(),
               fmt::format("ImageFolder: {} has no class subfolders: the split is empty", o.root));

  std::vector<Item> items;
  std::vector<std::string> problems;
  for (size_t c = 0; c < class_names.size(); ++c) {
    std::vector<Item> found;
    for (const fs::directory_entry& e : fs::directory_iterator(fs::path(o.root) / class_names[c])) {
      const std::string name = e.path().filename().string();
      if (!e.is_regular_file() || name.empty() || name[0] == '.' || !is_image_name(name)) continue;
      found.push_back(
          Item{e.path().string(), class_names[c] + "/" + name, static_cast<int32_t>(c)});
    }
    if (found.empty())
      problems.push_back(fmt::format("{}: class folder holds no .jpg/.jpeg/.png files",
                                     (fs::path(o.root) / class_names[c]).string()));
    std::sort(found.begin(), found.end(),
              [](const Item& a, const Item& b) { return a.path < b.path; });
    items.insert(items.end(), found.begin(), found.end());
  }
  const int64_t n = static_cast<int64_t>(items.size());

  // Pass 1: headers (format, size) of every file; all problems together.
  std::vector<std::string> item_problem(static_cast<size_t>(n));
  std::vector<std::array<int64_t, 2>> sizes(static_cast<size_t>(n));
  parallel_for(n, o.threads, [&](int64_t i) {
    try {
      const ImageInfo info = detail::read_image_header(items[i].path);
      COHORT_CHECK(!(info.format == ImageFileFormat::jpeg && info.channels == 4),
                   fmt::format("{}: CMYK JPEG images are not supported", items[i].path));
      int64_t h = info.height, w = info.width;
      if (o.resize_shorter > 0) shorter_side_size(info.height, info.width, o.resize_shorter, h, w);
      sizes[i] = {h, w};
    } catch (const Error& e) {
      item_problem[i] = detail::plain_message(e.what());
    }
  });
  for (const std::string& p : item_problem)
    if (!p.empty()) problems.push_back(p);
  if (!problems.empty()) detail::throw_problems(fmt::format("ImageFolder {}", o.root), problems);

  DatasetSpec spec;
  spec.kind = TaskKind::classification;
  spec.split = o.split;
  spec.image_encoding = o.encoding;
  spec.channels = o.channels;
  // One [N,H,W,C] dataset when every image ends up the same size.
  const bool same =
      std::all_of(sizes.begin(), sizes.end(), [&](const auto& s) { return s == sizes[0]; });
  spec.height = same ? sizes[0][0] : 0;
  spec.width = same ? sizes[0][1] : 0;
  for (size_t c = 0; c < class_names.size(); ++c)
    spec.classes.push_back(ClassEntry{static_cast<int32_t>(c), class_names[c]});
  spec.mean = o.mean;
  spec.std = o.std;
  if (o.channels == 1 && spec.mean.size() == 3) {  // grey: the mean of the RGB statistics
    spec.mean = {(o.mean[0] + o.mean[1] + o.mean[2]) / 3};
    spec.std = {(o.std[0] + o.std[1] + o.std[2]) / 3};
  }
  spec.source = fmt::format("imagefolder root={} resize_shorter={} channels={}", o.root,
                            o.resize_shorter, o.channels);
  ShardSetWriter writer(o.out_dir, spec, o.writer);
  detail::write_in_order(
      writer, n, o.threads,
      [&](int64_t i) {
        const Item& item = items[i];
        SampleRecord r;
        r.name = item.name;
        r.class_id = item.class_id;
        std::vector<uint8_t> bytes = read_file_bytes(item.path);
        r.image = decode_image(bytes.data(), bytes.size(), o.channels, item.path);
        const auto format = sniff_image_format(bytes.data(), bytes.size());
        const bool resized = sizes[i][0] != r.image.height || sizes[i][1] != r.image.width;
        if (resized) {
          r.image = resize_image(r.image, sizes[i][0], sizes[i][1]);
        } else if ((o.encoding == ImageEncoding::png && format == ImageFileFormat::png) ||
                   (o.encoding == ImageEncoding::jpeg && format == ImageFileFormat::jpeg)) {
          r.encoded = std::move(bytes);  // verbatim: no second lossy pass
        }
        return r;
      },
      o.log);
  return detail::finish_set(writer, o);
}

}  // namespace cohort::data
