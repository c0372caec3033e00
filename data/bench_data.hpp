#pragma once
// `cohort bench data`: how many Cityscapes-shaped frames per second one rank's loader
// turns into augmented training crops, by image storage and worker thread count.
//
// Synthetic 2048x1024 street scenes (the synthetic-scenes converter) are written as
// raw, PNG and JPEG shard sets into one directory, plus the same frames as PNG files
// (<dir>/frames: *_image.png, *_label.png, meta.json) for the PyTorch DataLoader
// baseline, tools/bench_torch_dataloader.py, which prints the same table layout:
//
//   storage  threads  samples/s  ms/batch
//
// samples/s counts delivered samples (batches x batch size) after two warm-up batches,
// over at least min_seconds and min_batches; the files are in the page cache (this
// measures CPU work, not the disk). A second table gives, per storage, one thread's
// time per sample in fetch (HDF5 lock held), decode and augment.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "data/shard_format.hpp"

namespace cohort::data {

struct DataBenchOptions {
  // Where the shard sets and frames go; reused by a later run with the same frame
  // count and size. Empty: a temporary directory, removed at the end.
  std::string dir;
  int64_t frames = 24;  // distinct frames per shard set
  int64_t width = 2048, height = 1024;
  int64_t crop_height = 512, crop_width = 1024;
  int64_t batch = 8;
  std::vector<int> threads;  // thread counts to measure; empty: 1, 2, 4, ... up to max_threads
  int max_threads = 16;
  int prefetch = 4;
  std::vector<ImageEncoding> encodings = {ImageEncoding::raw, ImageEncoding::png,
                                          ImageEncoding::jpeg};
  TaskKind kind = TaskKind::segmentation;  // or multitask (adds depth)
  core::DType image_dtype = core::DType::f32;
  double min_seconds = 2.0;
  int64_t min_batches = 4;
  bool write_frames = true;  // the PNG files for the PyTorch baseline
  // Encoded storage: decode only each crop's source window, as the loader does by
  // default (false: whole images, for comparison).
  bool decode_window = true;
  std::FILE* out = stdout;  // nullptr prints nothing
};

struct DataBenchRow {
  ImageEncoding encoding = ImageEncoding::raw;
  int threads = 1;
  int64_t samples = 0;
  double seconds = 0, samples_per_s = 0, ms_per_batch = 0;
};

// Runs the sweep and prints both tables; returns the throughput rows.
std::vector<DataBenchRow> run_data_bench(const DataBenchOptions& options);

}  // namespace cohort::data
