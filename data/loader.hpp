#pragma once
// The threaded data loader: one rank's batches from a ShardSet.
//
//   ShardSet ──fetch (HDF5 lock, raw chunk copies)──> decode ──> augment + normalise
//        N worker threads, one SAMPLE at a time          (lock-free, data/augment.hpp)
//                                   │ written straight into row j of a batch slot
//                                   v
//   slots: prefetch + 1 batch buffers (pinned host memory when the device is a GPU)
//                                   │ last row done: async copy on the loader's copy
//                                   v stream, an event recorded after it
//   next(stream): batches in sampler order; the consumer's stream waits on the event
//
// Work is handed out one sample at a time in sampler order, so a batch of 8 keeps 8
// threads busy and batches complete roughly in order; next() returns them strictly
// in order whatever thread finished first. A sample's augmentation is a pure function
// of (seed, epoch, global index) (data/augment.hpp), and each sample is written to its
// own row, so batches are bit-identical for any thread count, and the union of every
// rank's batch at a step is the same for any world size with the same global batch.
//
// Memory and streams: a slot is reused once the consumer asks for the batch after
// it, so a returned Batch is valid until the next call of next() (or restore(), or
// destruction). For a CUDA device, next(stream) makes `stream` wait for the batch's
// copy (no host wait), and when the consumer moves on, an event recorded on the
// consumer's stream tells the copy stream when the slot's device buffers may be
// overwritten; the host side of a slot is refilled only after its last copy finished.
//
// Errors: a failure in a worker (a shard that vanished or changed size, a damaged
// chunk, an undecodable image) is raised by next() when the consumer reaches the
// batch that needed the sample, as a cohort::Error naming the shard file and the
// sample; workers stop taking new work, and the loader stays failed (next() raises
// the same error again) until restore(). Destruction stops and joins the workers at
// any point (mid-epoch, full queue, after a failure).
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/device.hpp"
#include "core/dtype.hpp"
#include "core/storage.hpp"
#include "core/tensor.hpp"
#include "data/augment.hpp"
#include "data/sampler.hpp"
#include "data/shard_reader.hpp"

namespace cohort::data {

enum class LoaderMode { train, eval };

struct LoaderOptions {
  // train: TrainSampler (one shuffled global order per epoch, endless: epochs follow
  // each other); eval: EvalSampler (this rank's contiguous range, once, last batch
  // may be short).
  LoaderMode mode = LoaderMode::train;
  int64_t batch_size = 8;  // per rank
  int rank = 0, world_size = 1;
  uint64_t seed = 0;  // the order and the augmentation (training)
  bool shuffle = true;
  // Training: start here instead of epoch 0 (a checkpoint's position()).
  std::optional<SamplerPosition> start;
  int threads = 0;  // worker threads; 0 = the machine's hardware threads
  // Encoded images (PNG/JPEG): decode only the part the sample's crop reads
  // (decode_image_window); the batches are the same either way (tested).
  bool decode_window = true;
  int prefetch = 2;  // batches being prepared or ready ahead of the consumer (>= 1)
  AugmentOptions augment;
  core::DType image_dtype = core::DType::f32;  // f32 or bf16
  core::DType label_dtype = core::DType::u8;   // u8 or i32
  core::Device device = core::Device::cpu();   // where batches are delivered
};

struct Batch {
  int64_t epoch = 0;             // training epoch (0 in evaluation)
  int64_t step = 0;              // step within the epoch (training) or batch number (evaluation)
  std::vector<int64_t> indices;  // global sample index of each row
  int64_t size() const { return static_cast<int64_t>(indices.size()); }

  // On LoaderOptions::device; undefined when the set's kind has no such output.
  core::Tensor image;        // [B, H, W, C] normalised with the set's mean/std, f32 or bf16
  core::Tensor label;        // [B, H, W] u8 or i32 train ids, 255 = ignore
  core::Tensor depth;        // [B, H, W] f32 metres, 0 = invalid (or padding)
  core::Tensor depth_valid;  // [B, H, W] u8, 1 where depth > 0
  core::Tensor class_id;     // [B] i32
};

class Loader {
 public:
  // Validates the options (sizes, dtypes, device, that a training epoch has at least
  // one step) and starts the workers, which begin filling slots at once.
  Loader(ShardSet set, LoaderOptions options);
  ~Loader();  // stops and joins the workers; waits for in-flight copies
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch in sampler order, valid until the next call. Training never runs
  // out; evaluation returns nullptr after this rank's last batch (at once for a rank
  // without samples). For a CUDA device `stream` (the consumer's, e.g. a Context's)
  // is required: it is made to wait for the batch's copy. Throws cohort::Error when
  // the batch could not be made (see above).
  const Batch* next(core::StreamHandle stream = nullptr);

  // Training: where the consumer stands, i.e. the position of the batch next() returns
  // next (prefetched batches do not count). Save it with a checkpoint; resuming with
  // `start` or restore() continues the exact sequence, also on another world size with
  // the same global batch.
  SamplerPosition position() const;
  // Training: drops prefetched work and continues from `position` (throws, and keeps
  // the current state, when the position belongs to another seed or dataset size, or
  // is not a whole number of this run's global batches).
  void restore(const SamplerPosition& position);

  int64_t steps_per_epoch() const;  // training
  int64_t batches() const;          // evaluation: this rank's batch count
  int threads() const;
  // Output size (rows, columns) of every sample.
  int64_t height() const;
  int64_t width() const;
  const ShardSet& shards() const;
  const LoaderOptions& options() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> m_impl;
};

}  // namespace cohort::data
