// `cohort convert <kind> [options]` (run_convert in convert.hpp).
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "core/error.hpp"
#include "data/convert.hpp"
#include "data/verify.hpp"

namespace cohort::data {
namespace {

// Options every converter shares; the string fields are parsed after CLI11 is done.
struct CommonFlags {
  std::string out, encoding, depth_dtype = "f32";
  int64_t samples_per_shard = 0;
  int deflate = 1, png_level = 3, jpeg_quality = 95, threads = 0;
  bool overwrite = false, verify = false, quiet = false;
};

void add_common(CLI::App* cmd, CommonFlags& f, const std::string& default_encoding,
                bool with_depth) {
  f.encoding = default_encoding;
  cmd->add_option("--out", f.out, "Output directory (manifest.json + shards)")->required();
  cmd->add_option("--encoding", f.encoding, "Image storage: raw, png or jpeg")
      ->capture_default_str();
  if (with_depth)
    cmd->add_option("--depth-dtype", f.depth_dtype, "Depth storage: f32 or f16")
        ->capture_default_str();
  cmd->add_option("--samples-per-shard", f.samples_per_shard, "0: about 1 GiB per shard")
      ->capture_default_str();
  cmd->add_option("--deflate", f.deflate, "zlib level of label/depth chunks (0 = none)")
      ->capture_default_str();
  cmd->add_option("--png-level", f.png_level, "zlib level of PNG-encoded images")
      ->capture_default_str();
  cmd->add_option("--jpeg-quality", f.jpeg_quality)->capture_default_str();
  cmd->add_option("--threads", f.threads, "0: all cores")->capture_default_str();
  cmd->add_flag("--overwrite", f.overwrite, "Replace a shard set already in --out");
  cmd->add_flag("--verify", f.verify, "Re-read and check the written set");
  cmd->add_flag("--quiet", f.quiet, "No progress lines");
}

void apply_common(const CommonFlags& f, ConvertCommon& c) {
  c.out_dir = f.out;
  c.threads = f.threads;
  c.verify = f.verify;
  c.writer.samples_per_shard = f.samples_per_shard;
  c.writer.deflate_level = f.deflate;
  c.writer.png_level = f.png_level;
  c.writer.jpeg_quality = f.jpeg_quality;
  c.writer.overwrite = f.overwrite;
  if (!f.quiet) c.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
}

void print_summary(const Manifest& m, const std::string& dir, double seconds) {
  uint64_t bytes = 0;
  for (const ShardEntry& e : m.shards)
    bytes += e.bytes;
  std::printf("%s\n", fmt::format("wrote {} {} samples ({}, {}) to {}: {} shard(s), {:.1f} MiB, "
                                  "{:.1f} s",
                                  m.sample_count, m.spec.split, to_string(m.spec.kind),
                                  to_string(m.spec.image_encoding), dir, m.shards.size(),
                                  bytes / 1048576.0, seconds)
                          .c_str());
}

}  // namespace

int run_convert(const std::vector<std::string>& args) {
  CLI::App app{"cohort convert: make HDF5 shard sets (docs/SHARD_FORMAT.md)", "cohort convert"};
  app.require_subcommand(1);

  CommonFlags cs_flags;
  CityscapesOptions cs;
  std::string cs_kind = "segmentation";
  auto* cs_cmd = app.add_subcommand("cityscapes", "Cityscapes from its directory layout");
  cs_cmd->add_option("--root", cs.root, "Directory holding leftImg8bit/, gtFine/, ...")->required();
  cs_cmd->add_option("--split", cs.split)->capture_default_str();
  cs_cmd->add_option("--annotation", cs.annotation, "gtFine or gtCoarse")->capture_default_str();
  cs_cmd->add_option("--kind", cs_kind, "segmentation, depth or multitask")->capture_default_str();
  cs_cmd->add_option("--limit", cs.limit, "Only the first N images (0 = all)")
      ->capture_default_str();
  add_common(cs_cmd, cs_flags, "png", true);
  cs_cmd->add_flag("--keep-png", cs.keep_png,
                   "With --encoding png: store the source PNG files verbatim instead of "
                   "re-encoding them with row filters that decode ~23% faster");

  CommonFlags if_flags;
  ImageFolderOptions fo;
  auto* if_cmd = app.add_subcommand("imagefolder", "One subfolder of JPEG/PNG files per class");
  if_cmd->add_option("--root", fo.root)->required();
  if_cmd->add_option("--split", fo.split)->capture_default_str();
  if_cmd->add_option("--resize-shorter", fo.resize_shorter, "Shorter side in pixels (0 = keep)")
      ->capture_default_str();
  if_cmd->add_option("--channels", fo.channels, "1 or 3")->capture_default_str();
  add_common(if_cmd, if_flags, "jpeg", false);

  CommonFlags fm_flags;
  FashionMnistOptions fm;
  auto* fm_cmd = app.add_subcommand("fashion-mnist", "Fashion-MNIST from its IDX files");
  fm_cmd->add_option("--dir", fm.dir)->capture_default_str();
  fm_cmd->add_option("--split", fm.split, "train or test")->capture_default_str();
  add_common(fm_cmd, fm_flags, "raw", false);

  CommonFlags sy_flags;
  SyntheticScenesOptions sy;
  std::string sy_kind = "multitask";
  auto* sy_cmd = app.add_subcommand("synthetic-scenes", "Procedural street scenes");
  sy_cmd->add_option("--split", sy.split)->capture_default_str();
  sy_cmd->add_option("--count", sy.count)->capture_default_str();
  sy_cmd->add_option("--width", sy.width)->capture_default_str();
  sy_cmd->add_option("--height", sy.height)->capture_default_str();
  sy_cmd->add_option("--seed", sy.seed)->capture_default_str();
  sy_cmd->add_option("--kind", sy_kind, "segmentation, depth or multitask")->capture_default_str();
  add_common(sy_cmd, sy_flags, "raw", true);

  std::string verify_dir;
  bool no_crc = false, structure_only = false;
  int verify_threads = 0;
  auto* v_cmd = app.add_subcommand("verify", "Check a shard set: counts, schema, checksums");
  v_cmd->add_option("dir", verify_dir, "Shard set directory")->required();
  v_cmd->add_flag("--no-crc", no_crc, "Skip whole-file CRC32");
  v_cmd->add_flag("--structure-only", structure_only, "Do not read every sample");
  v_cmd->add_option("--threads", verify_threads)->capture_default_str();

  // CLI11 consumes a vector from its back.
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  try {
    if (v_cmd->parsed()) {
      VerifyOptions vo;
      vo.check_crc32 = !no_crc;
      vo.check_samples = !structure_only;
      vo.threads = verify_threads;
      const VerifyReport report = verify_shard_set(verify_dir, vo);
      std::printf("%s\n", report.text().c_str());
      return report.ok() ? 0 : 1;
    }
    Manifest m;
    std::string out;
    if (cs_cmd->parsed()) {
      apply_common(cs_flags, cs);
      cs.kind = parse_task_kind(cs_kind, "--kind");
      cs.encoding = parse_image_encoding(cs_flags.encoding, "--encoding");
      cs.depth_dtype = parse_depth_dtype(cs_flags.depth_dtype, "--depth-dtype");
      m = convert_cityscapes(cs);
      out = cs.out_dir;
    } else if (if_cmd->parsed()) {
      apply_common(if_flags, fo);
      fo.encoding = parse_image_encoding(if_flags.encoding, "--encoding");
      m = convert_imagefolder(fo);
      out = fo.out_dir;
    } else if (fm_cmd->parsed()) {
      apply_common(fm_flags, fm);
      fm.encoding = parse_image_encoding(fm_flags.encoding, "--encoding");
      m = convert_fashion_mnist(fm);
      out = fm.out_dir;
    } else if (sy_cmd->parsed()) {
      apply_common(sy_flags, sy);
      sy.kind = parse_task_kind(sy_kind, "--kind");
      sy.encoding = parse_image_encoding(sy_flags.encoding, "--encoding");
      sy.depth_dtype = parse_depth_dtype(sy_flags.depth_dtype, "--depth-dtype");
      m = convert_synthetic_scenes(sy);
      out = sy.out_dir;
    }
    print_summary(m, out, seconds());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cohort convert: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace cohort::data
