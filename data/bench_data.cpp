#include "data/bench_data.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.hpp"
#include "data/augment.hpp"
#include "data/convert.hpp"
#include "data/image_codec.hpp"
#include "data/loader.hpp"
#include "data/manifest.hpp"
#include "data/shard_reader.hpp"

namespace cohort::data {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

template <typename... Args>
void say(std::FILE* out, fmt::format_string<Args...> format, Args&&... args) {
  if (!out) return;
  fmt::print(out, format, std::forward<Args>(args)...);
  std::fflush(out);
}

// The bench's directory: the caller's, or a temporary one removed at the end.
class WorkDir {
 public:
  explicit WorkDir(const std::string& dir) {
    if (dir.empty()) {
      m_path = fs::temp_directory_path() / fmt::format("cohort-bench-data-{}", ::getpid());
      m_remove = true;
    } else {
      m_path = dir;
    }
    fs::create_directories(m_path);
  }
  ~WorkDir() {
    std::error_code ec;
    if (m_remove) fs::remove_all(m_path, ec);
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const fs::path& path() const { return m_path; }

 private:
  fs::path m_path;
  bool m_remove = false;
};

// An existing set made by an earlier run with the same frames, or a new one.
void ensure_set(const DataBenchOptions& o, ImageEncoding encoding, const std::string& dir) {
  if (fs::exists(manifest_path(dir))) {
    try {
      const Manifest m = read_manifest(dir);
      if (m.sample_count == o.frames && m.spec.width == o.width && m.spec.height == o.height &&
          m.spec.kind == o.kind && m.spec.image_encoding == encoding)
        return;
    } catch (const Error&) {
      // unreadable: convert again
    }
  }
  say(o.out, "writing {} {}x{} frames as {} shards into {} ...\n", o.frames, o.width, o.height,
      to_string(encoding), dir);
  SyntheticScenesOptions c;
  c.out_dir = dir;
  c.count = o.frames;
  c.width = o.width;
  c.height = o.height;
  c.kind = o.kind;
  c.encoding = encoding;
  c.writer.overwrite = true;
  convert_synthetic_scenes(c);
}

// <dir>/frames: each frame's image as the PNG file the PNG shards store (or a fresh
// PNG), its label map as an 8-bit grey PNG, and meta.json with the normalisation.
void write_frames(const DataBenchOptions& o, const ShardSet& set, bool stored_png,
                  const fs::path& dir) {
  fs::create_directories(dir);
  for (int64_t i = 0; i < set.size(); ++i) {
    const std::string stem = (dir / set.sample_name(i)).string();
    if (fs::exists(stem + "_image.png") && fs::exists(stem + "_label.png")) continue;
    SampleBytes bytes = set.fetch(i);
    std::vector<uint8_t> png = stored_png ? bytes.image : std::vector<uint8_t>{};
    const Sample s = set.decode(std::move(bytes));
    if (png.empty()) png = encode_png(s.image, 3);
    write_file_bytes(stem + "_image.png", png);
    if (!s.label.empty())
      write_file_bytes(stem + "_label.png",
                       encode_png(Image8{s.image.height, s.image.width, 1, s.label}, 1));
  }
  const DatasetSpec& spec = set.spec();
  std::ofstream meta(dir / "meta.json");
  meta << fmt::format(
      "{{\"mean\": [{}], \"std\": [{}], \"crop\": [{}, {}], \"scale\": [0.5, 2.0], "
      "\"ignore_label\": 255}}\n",
      fmt::join(spec.mean, ", "), fmt::join(spec.std, ", "), o.crop_height, o.crop_width);
}

// One thread's milliseconds per sample in fetch, decode and augment.
void stage_times(const DataBenchOptions& o, const ShardSet& set, double& fetch_ms,
                 double& decode_ms, double& augment_ms) {
  const AugmentOptions augment = AugmentOptions::dense_train(o.crop_height, o.crop_width);
  const int64_t pixels = o.crop_height * o.crop_width;
  std::vector<uint8_t> image(static_cast<size_t>(pixels * set.spec().channels) *
                             core::dtype_size(o.image_dtype));
  std::vector<uint8_t> label(static_cast<size_t>(pixels)), valid(label.size());
  std::vector<float> depth(label.size());
  const bool labels = has_label_map(o.kind), depths = has_depth(o.kind);
  const int64_t n = std::min<int64_t>(set.size(), 8);
  fetch_ms = decode_ms = augment_ms = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    SampleBytes bytes = set.fetch(i);
    const auto t1 = Clock::now();
    const auto [height, width, channels] = set.image_shape(i);
    const SamplePlan plan = plan_sample(augment, o.kind, height, width, 0, 0, i);
    const ImageWindow window = source_window(plan, height, width);
    const Sample s = set.decode(std::move(bytes), o.decode_window ? &window : nullptr);
    const auto t2 = Clock::now();
    render_sample(s, plan, set.spec(),
                  {image.data(), o.image_dtype, labels ? label.data() : nullptr, core::DType::u8,
                   depths ? depth.data() : nullptr, depths ? valid.data() : nullptr});
    const auto t3 = Clock::now();
    fetch_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
    decode_ms += std::chrono::duration<double, std::milli>(t2 - t1).count();
    augment_ms += std::chrono::duration<double, std::milli>(t3 - t2).count();
  }
  fetch_ms /= static_cast<double>(n);
  decode_ms /= static_cast<double>(n);
  augment_ms /= static_cast<double>(n);
}

DataBenchRow measure(const DataBenchOptions& o, const ShardSet& set, ImageEncoding encoding,
                     int threads) {
  LoaderOptions lo;
  lo.batch_size = o.batch;
  lo.threads = threads;
  lo.prefetch = o.prefetch;
  lo.seed = 1;
  lo.image_dtype = o.image_dtype;
  lo.augment = AugmentOptions::dense_train(o.crop_height, o.crop_width);
  lo.decode_window = o.decode_window;
  Loader loader(set, lo);
  for (int i = 0; i < 2; ++i)  // warm-up: thread start, first slots, allocator
    loader.next();
  DataBenchRow row;
  row.encoding = encoding;
  row.threads = threads;
  int64_t batches = 0;
  const auto start = Clock::now();
  while (batches < o.min_batches || seconds_since(start) < o.min_seconds) {
    loader.next();
    ++batches;
  }
  row.seconds = seconds_since(start);
  row.samples = batches * o.batch;
  row.samples_per_s = static_cast<double>(row.samples) / row.seconds;
  row.ms_per_batch = 1000.0 * row.seconds / static_cast<double>(batches);
  return row;
}

}  // namespace

std::vector<DataBenchRow> run_data_bench(const DataBenchOptions& o) {
  COHORT_CHECK(o.frames >= o.batch && o.batch >= 1,
               fmt::format("bench data: {} frames for batches of {} (need at least one batch)",
                           o.frames, o.batch));
  COHORT_CHECK(o.kind != TaskKind::classification,
               "bench data: the kind must be segmentation, depth or multitask");
  std::vector<int> counts = o.threads;
  if (counts.empty())
    for (int t = 1; t <= std::max(1, o.max_threads); t *= 2)
      counts.push_back(t);
  COHORT_CHECK(!o.encodings.empty(), "bench data: no image storage to measure");
  for (int t : counts)
    COHORT_CHECK(t >= 1, fmt::format("bench data: thread count {}", t));

  WorkDir work(o.dir);
  std::vector<ShardSet> sets;
  for (ImageEncoding e : o.encodings) {
    const std::string dir = (work.path() / to_string(e)).string();
    ensure_set(o, e, dir);
    sets.push_back(ShardSet::open(dir));
  }
  if (o.write_frames && has_label_map(o.kind)) {
    size_t source = 0;
    for (size_t i = 0; i < o.encodings.size(); ++i)
      if (o.encodings[i] == ImageEncoding::png) source = i;
    write_frames(o, sets[source], o.encodings[source] == ImageEncoding::png,
                 work.path() / "frames");
  }

  say(o.out,
      "\n# cohort data loader: {} {}x{} frames -> {}x{} crops (scale 0.5-2, crop, flip, jitter, "
      "normalise), batch {}, {} images, {} hardware threads\n",
      to_string(o.kind), o.width, o.height, o.crop_width, o.crop_height, o.batch,
      core::dtype_name(o.image_dtype), std::thread::hardware_concurrency());
  say(o.out, "# one thread, ms per sample\n");
  say(o.out, "{:<8} {:>9} {:>10} {:>11}\n", "storage", "fetch", "decode", "augment");
  for (size_t i = 0; i < sets.size(); ++i) {
    double fetch = 0, decode = 0, augment = 0;
    stage_times(o, sets[i], fetch, decode, augment);
    say(o.out, "{:<8} {:>9.2f} {:>10.2f} {:>11.2f}\n", to_string(o.encodings[i]), fetch, decode,
        augment);
  }
  say(o.out, "\n{:<8} {:>8} {:>10} {:>9}\n", "storage", "threads", "samples/s", "ms/batch");
  std::vector<DataBenchRow> rows;
  for (size_t i = 0; i < sets.size(); ++i)
    for (int t : counts) {
      const DataBenchRow row = measure(o, sets[i], o.encodings[i], t);
      say(o.out, "{:<8} {:>8} {:>10.1f} {:>9.1f}\n", to_string(row.encoding), row.threads,
          row.samples_per_s, row.ms_per_batch);
      rows.push_back(row);
    }
  if (o.write_frames && has_label_map(o.kind) && !o.dir.empty())
    say(o.out,
        "\nPyTorch baseline on the same frames:\n  python3 tools/bench_torch_dataloader.py "
        "--frames {} --batch {}\n",
        (work.path() / "frames").string(), o.batch);
  return rows;
}

}  // namespace cohort::data
