// The threaded loader and its augmentation: bit-identical batches for any thread
// count and world size, augmentation invariants (label ids, crop size, flip and scale
// consistent across image/label/depth), exact mid-epoch resume, errors that name the
// shard instead of hanging, clean shutdown, evaluation coverage.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "core/error.hpp"
#include "data/augment.hpp"
#include "data/bench_data.hpp"
#include "data/convert.hpp"
#include "data/loader.hpp"
#include "data/shard_writer.hpp"
#include "tests/core/data_test_helpers.hpp"
#include "tests/support/temp_dir.hpp"

namespace cohort::data {
namespace {

namespace fs = std::filesystem;
using testing::contains;

// Runs `fn` on its own thread; a body that has not finished after `seconds` is a hang:
// the process ends with a message instead of blocking the suite.
template <typename Fn>
void with_watchdog(int seconds, Fn&& fn) {
  std::packaged_task<void()> task(std::forward<Fn>(fn));
  std::future<void> done = task.get_future();
  std::thread body(std::move(task));
  if (done.wait_for(std::chrono::seconds(seconds)) != std::future_status::ready) {
    std::fprintf(stderr, "watchdog: the test body did not finish within %d s (a hang)\n", seconds);
    std::fflush(stderr);
    std::_Exit(3);
  }
  body.join();
  done.get();  // rethrows the body's exception, if any
}

// Synthetic street scenes (segmentation + depth), written by the converter.
Manifest make_scenes(const std::string& dir, int64_t count, int64_t width, int64_t height,
                     ImageEncoding encoding = ImageEncoding::raw, int64_t per_shard = 0,
                     TaskKind kind = TaskKind::multitask) {
  SyntheticScenesOptions o;
  o.out_dir = dir;
  o.count = count;
  o.width = width;
  o.height = height;
  o.encoding = encoding;
  o.kind = kind;
  o.seed = 5;
  o.threads = 2;
  o.writer.samples_per_shard = per_shard;
  return convert_synthetic_scenes(o);
}

// A JPEG classification set in `dir`: `count` images of `size(i)` = {h, w}, class
// i % classes, pixels from pattern_bytes.
template <typename SizeOf>
void write_classification_set(const std::string& dir, int64_t count, int classes, SizeOf size) {
  DatasetSpec spec;
  spec.kind = TaskKind::classification;
  spec.image_encoding = ImageEncoding::jpeg;
  spec.channels = 3;
  spec.classes = testing::numbered_classes(classes);
  spec.mean = {0.5f, 0.5f, 0.5f};
  spec.std = {0.25f, 0.25f, 0.25f};
  spec.source = "test";
  ShardSetWriter writer(dir, spec);
  for (int64_t i = 0; i < count; ++i) {
    SampleRecord r;
    r.name = "img" + std::to_string(i);
    const auto [h, w] = size(i);
    r.image = Image8{h, w, 3, testing::pattern_bytes(size_t(h * w * 3), uint32_t(i))};
    r.class_id = static_cast<int32_t>(i % classes);
    writer.append(std::move(r));
  }
  writer.finish();
}

std::vector<uint8_t> bytes_of(const core::Tensor& t) {
  if (!t.defined()) return {};
  const auto* p = static_cast<const uint8_t*>(t.raw());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

// A batch copied out of the loader's buffers (they are reused by the next call).
struct HostBatch {
  int64_t epoch = 0, step = 0;
  std::vector<int64_t> indices;
  std::vector<std::vector<uint8_t>> outputs;  // image, label, depth, valid, class id

  explicit HostBatch(const Batch& b) : epoch(b.epoch), step(b.step), indices(b.indices) {
    for (const core::Tensor* t : {&b.image, &b.label, &b.depth, &b.depth_valid, &b.class_id})
      outputs.push_back(bytes_of(*t));
  }
  // Bytes of row r of output k.
  std::vector<uint8_t> row(size_t k, size_t r) const {
    const size_t per_row = outputs[k].size() / indices.size();
    return std::vector<uint8_t>(outputs[k].begin() + r * per_row,
                                outputs[k].begin() + (r + 1) * per_row);
  }
  bool operator==(const HostBatch&) const = default;
};

std::vector<HostBatch> take(Loader& loader, int64_t n) {
  std::vector<HostBatch> out;
  for (int64_t i = 0; i < n; ++i) {
    const Batch* b = loader.next();
    if (!b) break;
    out.emplace_back(*b);
  }
  return out;
}

LoaderOptions train_options(int64_t batch, int threads, int64_t crop_h, int64_t crop_w) {
  LoaderOptions o;
  o.batch_size = batch;
  o.threads = threads;
  o.seed = 11;
  o.augment = AugmentOptions::dense_train(crop_h, crop_w);
  return o;
}

class LoaderTest : public cohort::testing::TempDirTest {};

// The loader's batches equal a plain single-threaded loop over the sampler's indices
// (fetch, decode, plan, render), for 1 and 4 worker threads, across an epoch boundary,
// for f32 + u8 on raw shards and bf16 + i32 on PNG shards.
TEST_F(LoaderTest, BatchesEqualASingleThreadedReferenceForAnyThreadCount) {
  for (ImageEncoding enc : {ImageEncoding::raw, ImageEncoding::png}) {
    const std::string d = path(to_string(enc));
    make_scenes(d, 10, 48, 24, enc, 4);
    const ShardSet set = ShardSet::open(d);
    LoaderOptions o = train_options(3, 1, 16, 32);
    if (enc == ImageEncoding::png) {
      o.image_dtype = core::DType::bf16;
      o.label_dtype = core::DType::i32;
    }
    const int64_t batches = 5;  // 3 steps per epoch: crosses into epoch 1
    std::vector<HostBatch> one, four;
    with_watchdog(60, [&] {
      Loader a(set, o);
      one = take(a, batches);
      o.threads = 4;
      o.prefetch = 3;
      Loader b(set, o);
      four = take(b, batches);
    });
    ASSERT_EQ(one.size(), static_cast<size_t>(batches));
    EXPECT_TRUE(one == four) << to_string(enc);

    TrainSampler sampler({set.size(), 3, 0, 1, o.seed, true});
    const size_t image_row = 16 * 32 * 3 * core::dtype_size(o.image_dtype);
    const size_t label_row = 16 * 32 * core::dtype_size(o.label_dtype);
    for (int64_t b = 0; b < batches; ++b) {
      const int64_t epoch = sampler.epoch(), step = sampler.step();
      const std::vector<int64_t> indices = sampler.next();
      EXPECT_EQ(one[b].epoch, epoch);
      EXPECT_EQ(one[b].step, step);
      ASSERT_EQ(one[b].indices, indices);
      for (size_t r = 0; r < indices.size(); ++r) {
        const Sample s = set.read(indices[r]);
        const SamplePlan plan =
            plan_sample(o.augment, set.spec().kind, 24, 48, o.seed, epoch, indices[r]);
        std::vector<uint8_t> image(image_row), label(label_row), valid(16 * 32);
        std::vector<float> depth(16 * 32);
        render_sample(
            s, plan, set.spec(),
            {image.data(), o.image_dtype, label.data(), o.label_dtype, depth.data(), valid.data()});
        EXPECT_EQ(one[b].row(0, r), image) << "batch " << b << " row " << r;
        EXPECT_EQ(one[b].row(1, r), label) << "batch " << b << " row " << r;
        std::vector<uint8_t> depth_bytes(depth.size() * 4);
        std::memcpy(depth_bytes.data(), depth.data(), depth_bytes.size());
        EXPECT_EQ(one[b].row(2, r), depth_bytes) << "batch " << b << " row " << r;
        EXPECT_EQ(one[b].row(3, r), valid) << "batch " << b << " row " << r;
      }
    }
  }
}

// `n` batches of `set` decoding whole images, and decoding only each crop's window.
std::pair<std::vector<HostBatch>, std::vector<HostBatch>> whole_and_windowed(const ShardSet& set,
                                                                             LoaderOptions o,
                                                                             int64_t n) {
  std::vector<HostBatch> whole, windowed;
  with_watchdog(60, [&] {
    o.decode_window = false;
    Loader a(set, o);
    whole = take(a, n);
    o.decode_window = true;
    Loader b(set, o);
    windowed = take(b, n);
  });
  return {whole, windowed};
}

// Decoding only the source window of each crop (decode_image_window) changes no
// batch: PNG and JPEG scenes at scales 0.5-2 with flips and padding, over two
// epochs, and JPEG classification with random resized crops, bit for bit.
TEST_F(LoaderTest, WindowedDecodingGivesTheSameBatches) {
  for (ImageEncoding enc : {ImageEncoding::png, ImageEncoding::jpeg}) {
    const std::string d = path(std::string("window-") + to_string(enc));
    make_scenes(d, 8, 160, 96, enc, 3);
    const auto [whole, windowed] =
        whole_and_windowed(ShardSet::open(d), train_options(2, 2, 48, 96), 8);
    ASSERT_EQ(whole.size(), 8u);
    EXPECT_TRUE(whole == windowed) << to_string(enc);
  }
  const std::string d = path("window-classes");
  write_classification_set(d, 6, 2, [](int64_t i) {
    return std::pair<int64_t, int64_t>{70 + 9 * i, 90 - 5 * i};
  });
  LoaderOptions o;
  o.batch_size = 3;
  o.threads = 2;
  o.seed = 4;
  o.augment = AugmentOptions::classification_train(24);
  const auto [whole, windowed] = whole_and_windowed(ShardSet::open(d), o, 6);
  ASSERT_EQ(whole.size(), 6u);
  EXPECT_TRUE(whole == windowed) << "classification";
}

// 1 rank x 4, 2 ranks x 2 and 4 ranks x 1: at every step the ranks' rows, in rank
// order, are the 1-rank batch's rows, bit for bit (augmentation depends on the
// global sample index, not on who loads it).
TEST_F(LoaderTest, WorldSizesSeeTheSameGlobalBatches) {
  make_scenes(dir(), 12, 40, 20);
  const ShardSet set = ShardSet::open(dir());
  const int64_t steps = 5;  // 3 steps per epoch
  with_watchdog(60, [&] {
    LoaderOptions o = train_options(4, 2, 12, 24);
    Loader single(set, o);
    const std::vector<HostBatch> reference = take(single, steps);
    for (int world : {2, 4}) {
      std::vector<std::vector<HostBatch>> ranks;
      for (int r = 0; r < world; ++r) {
        LoaderOptions ro = o;
        ro.batch_size = 4 / world;
        ro.rank = r;
        ro.world_size = world;
        Loader l(set, ro);
        ranks.push_back(take(l, steps));
      }
      for (int64_t s = 0; s < steps; ++s) {
        size_t row = 0;
        for (int r = 0; r < world; ++r) {
          const HostBatch& got = ranks[r][s];
          EXPECT_EQ(got.epoch, reference[s].epoch);
          EXPECT_EQ(got.step, reference[s].step);
          for (size_t i = 0; i < got.indices.size(); ++i, ++row) {
            ASSERT_EQ(got.indices[i], reference[s].indices[row]) << "world " << world;
            for (size_t k = 0; k < 4; ++k)
              EXPECT_EQ(got.row(k, i), reference[s].row(k, row))
                  << "world " << world << " step " << s << " rank " << r << " output " << k;
          }
        }
        EXPECT_EQ(row, reference[s].indices.size());
      }
    }
  });
}

// Scenes smaller than the crop (so most crops are padded): every label is a class id
// or 255, depth is >= 0 with its mask equal to depth > 0, padding is 255 / 0 / 0 and
// the image there is the mean (0); shapes are the crop size.
TEST_F(LoaderTest, AugmentedCropsHaveValidLabelsDepthAndPadding) {
  make_scenes(dir(), 8, 64, 32);
  const ShardSet set = ShardSet::open(dir());
  with_watchdog(60, [&] {
    LoaderOptions o = train_options(4, 2, 48, 96);
    Loader loader(set, o);
    EXPECT_EQ(loader.height(), 48);
    EXPECT_EQ(loader.width(), 96);
    int64_t padded = 0, labelled = 0;
    for (int i = 0; i < 4; ++i) {
      const Batch* b = loader.next();
      ASSERT_NE(b, nullptr);
      EXPECT_EQ(b->image.shape(), (core::Shape{4, 48, 96, 3}));
      EXPECT_EQ(b->label.shape(), (core::Shape{4, 48, 96}));
      EXPECT_EQ(b->depth.shape(), (core::Shape{4, 48, 96}));
      EXPECT_EQ(b->depth_valid.shape(), (core::Shape{4, 48, 96}));
      EXPECT_FALSE(b->class_id.defined());
      const uint8_t* label = b->label.data<uint8_t>();
      const float* depth = b->depth.data<float>();
      const uint8_t* valid = b->depth_valid.data<uint8_t>();
      const float* image = b->image.data<float>();
      for (int64_t p = 0; p < b->label.numel(); ++p) {
        ASSERT_TRUE(label[p] < 19 || label[p] == 255) << "label " << int(label[p]);
        ASSERT_GE(depth[p], 0.0f);
        ASSERT_EQ(valid[p], depth[p] > 0 ? 1 : 0);
        if (label[p] == 255) {
          // Synthetic scenes have no ignore pixels: 255 is padding.
          ++padded;
          ASSERT_EQ(depth[p], 0.0f);
          for (int c = 0; c < 3; ++c)
            ASSERT_EQ(image[p * 3 + c], 0.0f);
        } else {
          ++labelled;
        }
      }
    }
    EXPECT_GT(padded, 0);
    EXPECT_GT(labelled, 0);
  });
}

// A set whose pixels encode their own coordinates: image R = 2x, G = 4y, label a
// function of (x, y), depth = 1 + x + 1000 y. After augmentation (no colour jitter)
// every unpadded output pixel must show the same source pixel in all three (image
// within the bilinear footprint of the nearest pixel), columns must run backwards
// exactly when the plan flips, and the columns must advance by 1/scale.
TEST_F(LoaderTest, FlipAndScaleAreConsistentAcrossImageLabelAndDepth) {
  const int64_t H = 40, W = 100;
  DatasetSpec spec = testing::dense_spec(TaskKind::multitask, H, W, ImageEncoding::raw);
  spec.mean = {0.5f, 0.5f, 0.5f};
  spec.std = {0.25f, 0.25f, 0.25f};
  auto class_of = [](int64_t x, int64_t y) { return static_cast<uint8_t>((x / 7 + y / 5) % 5); };
  {
    ShardSetWriter writer(dir(), spec);
    for (int64_t i = 0; i < 8; ++i) {
      SampleRecord r;
      r.name = "coords-" + std::to_string(i);
      r.image = Image8{H, W, 3, std::vector<uint8_t>(static_cast<size_t>(H * W * 3))};
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          uint8_t* p = &r.image.pixels[(y * W + x) * 3];
          p[0] = static_cast<uint8_t>(2 * x);
          p[1] = static_cast<uint8_t>(4 * y);
          p[2] = static_cast<uint8_t>(i);
          r.label.push_back(class_of(x, y));
          r.depth.push_back(static_cast<float>(1 + x + 1000 * y));
        }
      writer.append(std::move(r));
    }
    writer.finish();
  }
  const ShardSet set = ShardSet::open(dir());
  LoaderOptions o = train_options(2, 2, 32, 64);
  o.augment.brightness = o.augment.contrast = o.augment.saturation = 0;
  int flipped = 0, straight = 0;
  with_watchdog(60, [&] {
    Loader loader(set, o);
    for (int b = 0; b < 8; ++b) {
      const Batch* batch = loader.next();
      for (int64_t r = 0; r < batch->size(); ++r) {
        const int64_t index = batch->indices[r];
        const SamplePlan plan =
            plan_sample(o.augment, spec.kind, H, W, o.seed, batch->epoch, index);
        (plan.flip ? flipped : straight)++;
        const float* image = batch->image.data<float>() + r * 32 * 64 * 3;
        const uint8_t* label = batch->label.data<uint8_t>() + r * 32 * 64;
        const float* depth = batch->depth.data<float>() + r * 32 * 64;
        for (int64_t y = 0; y < 32; ++y) {
          int64_t first_x = -1, last_x = -1, first_col = -1, last_col = -1;
          for (int64_t x = 0; x < 64; ++x) {
            const int64_t p = y * 64 + x;
            if (depth[p] == 0) {
              ASSERT_EQ(label[p], 255);
              continue;
            }
            const int64_t code = static_cast<int64_t>(depth[p]) - 1;
            const int64_t sx = code % 1000, sy = code / 1000;
            ASSERT_EQ(label[p], class_of(sx, sy)) << "sample " << index << " at " << y << "," << x;
            const float red = (image[p * 3] * 0.25f + 0.5f) * 255.0f / 2.0f;
            const float green = (image[p * 3 + 1] * 0.25f + 0.5f) * 255.0f / 4.0f;
            ASSERT_NEAR(red, static_cast<float>(sx), 1.01f) << "sample " << index;
            ASSERT_NEAR(green, static_cast<float>(sy), 1.01f) << "sample " << index;
            if (first_x < 0) {
              first_x = sx;
              first_col = x;
            }
            last_x = sx;
            last_col = x;
          }
          if (first_x < 0 || last_col - first_col < 16) continue;
          // Direction: columns run right-to-left in the source exactly when flipped.
          if (plan.flip)
            EXPECT_GT(first_x, last_x) << "sample " << index;
          else
            EXPECT_LT(first_x, last_x) << "sample " << index;
          // Scale: output columns per source column.
          const double span = std::abs(static_cast<double>(last_x - first_x));
          EXPECT_NEAR(span * plan.scale, static_cast<double>(last_col - first_col),
                      2.0 * std::max(1.0, plan.scale))
              << "sample " << index << " scale " << plan.scale;
        }
      }
    }
  });
  EXPECT_GT(flipped, 0);
  EXPECT_GT(straight, 0);
}

// Colour jitter moves pixel values but never labels or depth, and keeps the
// jittered, clamped values within the normalised range of [0, 1].
TEST_F(LoaderTest, ColourJitterChangesOnlyTheImage) {
  make_scenes(dir(), 6, 48, 24);
  const ShardSet set = ShardSet::open(dir());
  AugmentOptions plain = AugmentOptions::dense_train(16, 32);
  plain.brightness = plain.contrast = plain.saturation = 0;
  AugmentOptions jittered = AugmentOptions::dense_train(16, 32);
  jittered.brightness = jittered.contrast = jittered.saturation = 0.5f;
  const Sample s = set.read(2);
  const SamplePlan a = plan_sample(plain, set.spec().kind, 24, 48, 3, 0, 2);
  const SamplePlan b = plan_sample(jittered, set.spec().kind, 24, 48, 3, 0, 2);
  EXPECT_EQ(a.scale, b.scale);  // the same draws, only the factors differ
  EXPECT_EQ(a.flip, b.flip);
  ASSERT_TRUE(b.jitter());
  std::vector<float> ia(16 * 32 * 3), ib(ia.size());
  std::vector<uint8_t> la(16 * 32), lb(la.size());
  render_sample(s, a, set.spec(), {ia.data(), core::DType::f32, la.data(), core::DType::u8});
  render_sample(s, b, set.spec(), {ib.data(), core::DType::f32, lb.data(), core::DType::u8});
  EXPECT_EQ(la, lb);
  EXPECT_NE(ia, ib);
  for (size_t i = 0; i < ib.size(); ++i) {
    const int c = static_cast<int>(i % 3);
    const float lo = -set.spec().mean[c] / set.spec().std[c];
    const float hi = (1 - set.spec().mean[c]) / set.spec().std[c];
    ASSERT_GE(ib[i], lo - 1e-5f);
    ASSERT_LE(ib[i], hi + 1e-5f);
  }
}

// A loader resumed from a mid-epoch position (new loader with `start`, or restore()
// on a running one) continues with exactly the batches the original run produced.
TEST_F(LoaderTest, ResumeMidEpochGivesTheSameRemainingBatches) {
  make_scenes(dir(), 10, 40, 20);
  const ShardSet set = ShardSet::open(dir());
  with_watchdog(60, [&] {
    LoaderOptions o = train_options(2, 3, 12, 24);
    Loader original(set, o);
    std::vector<HostBatch> first = take(original, 3);
    const SamplerPosition saved = original.position();
    EXPECT_EQ(saved.epoch, 0);
    EXPECT_EQ(saved.samples_done, 6);
    const std::vector<HostBatch> rest = take(original, 6);  // into epoch 1
    EXPECT_EQ(original.position().epoch, 1);
    EXPECT_EQ(original.position().samples_done, 8);

    LoaderOptions ro = o;
    ro.start = saved;
    ro.threads = 1;
    Loader resumed(set, ro);
    EXPECT_EQ(resumed.position().samples_done, 6);
    EXPECT_TRUE(take(resumed, 6) == rest);

    original.restore(saved);  // drops prefetched batches of epoch 1
    EXPECT_TRUE(take(original, 6) == rest);

    SamplerPosition other = saved;
    other.seed = 99;
    EXPECT_THROW(original.restore(other), Error);
    EXPECT_EQ(original.position().epoch, 1);  // unchanged by the refused restore
    EXPECT_EQ(original.position().samples_done, 8);
  });
}

// A shard deleted, truncated or corrupted (one byte of a sample's image) while the
// loader runs: next() raises an error that names the file and the sample (no hang, no
// crash), keeps raising it, and the loader still shuts down.
TEST_F(LoaderTest, VanishedTruncatedOrCorruptedShardIsNamedInTheConsumer) {
  const DatasetSpec spec = testing::dense_spec(TaskKind::multitask, 16, 32, ImageEncoding::raw);
  WriterOptions w;
  w.samples_per_shard = 4;
  LoaderOptions o = train_options(2, 2, 8, 16);
  o.prefetch = 1;
  // Damage the shard of the sample at position 10 of epoch 0's order: at most 4
  // samples are fetched before the damage, so that one is read after it.
  const int64_t target = epoch_order(24, o.seed, 0)[10];
  for (const std::string damage : {"deleted", "truncated", "corrupted"}) {
    const std::string d = path(damage);
    const Manifest m = testing::write_dense_set(d, spec, 24, w);
    const ShardSet set = ShardSet::open(d);
    const std::string victim = testing::shard_path(d, m, static_cast<size_t>(target / 4));
    with_watchdog(60, [&] {
      Loader loader(set, o);
      ASSERT_NE(loader.next(), nullptr);
      if (damage == "deleted") {
        fs::remove(victim);
      } else if (damage == "truncated") {
        fs::resize_file(victim, fs::file_size(victim) / 2);
      } else {
        const std::vector<uint8_t> image = testing::dense_record(spec, target).image.pixels;
        const int64_t at =
            testing::find_in_file(victim, std::vector<uint8_t>(image.begin(), image.begin() + 64));
        ASSERT_GE(at, 0);
        testing::flip_byte(victim, at + 10);
      }
      std::string message;
      for (int64_t i = 0; i < loader.steps_per_epoch() && message.empty(); ++i) {
        try {
          loader.next();
        } catch (const Error& e) {
          message = e.what();
        }
      }
      ASSERT_FALSE(message.empty()) << damage << ": no error in a whole epoch";
      EXPECT_TRUE(contains(message, victim)) << message;
      EXPECT_TRUE(contains(message, "sample")) << message;
      EXPECT_TRUE(contains(message, "data loader (rank 0 of 1): epoch 0 step")) << message;
      const char* why = damage == "deleted" ? "gone" : damage == "truncated" ? "bytes" : "Fletcher";
      EXPECT_TRUE(contains(message, why)) << message;
      if (damage == "corrupted") {
        EXPECT_TRUE(contains(message, fmt::format("(global {}, ", target))) << message;
      }
      try {
        loader.next();
        ADD_FAILURE() << "a failed loader returned a batch";
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), message);
      }
    });
  }
}

// Destroying a loader joins its workers at any point: before the first batch, with
// the prefetch queue full, mid-epoch.
TEST_F(LoaderTest, DestructionJoinsWorkersMidEpochAndWithAFullQueue) {
  make_scenes(dir(), 16, 48, 24);
  const ShardSet set = ShardSet::open(dir());
  with_watchdog(60, [&] {
    for (int prefetch : {1, 4}) {
      LoaderOptions o = train_options(2, 3, 16, 32);
      o.prefetch = prefetch;
      { Loader untouched(set, o); }
      Loader loader(set, o);
      ASSERT_NE(loader.next(), nullptr);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the queue fill
      ASSERT_NE(loader.next(), nullptr);
    }
  });
}

// Evaluation: across 3 ranks every sample is visited exactly once, rows equal the
// 1-rank loader's, the full image comes out unchanged (normalised only), and a rank
// without samples ends at once.
TEST_F(LoaderTest, EvaluationVisitsEverySampleOnceAcrossRanks) {
  make_scenes(dir(), 11, 32, 16);
  const ShardSet set = ShardSet::open(dir());
  with_watchdog(60, [&] {
    LoaderOptions o;
    o.mode = LoaderMode::eval;
    o.batch_size = 2;
    o.threads = 2;
    o.augment = AugmentOptions::dense_eval();
    Loader single(set, o);
    EXPECT_EQ(single.batches(), 6);
    const std::vector<HostBatch> all = take(single, 100);
    ASSERT_EQ(all.size(), 6u);
    EXPECT_EQ(all.back().indices.size(), 1u);  // the short last batch
    std::vector<std::vector<uint8_t>> image_of(11);
    for (const HostBatch& b : all)
      for (size_t r = 0; r < b.indices.size(); ++r)
        image_of[b.indices[r]] = b.row(0, r);
    // The full image, normalised: (p / 255 - mean) / std.
    const Sample s = set.read(4);
    std::vector<float> expect(s.image.pixels.size());
    for (size_t i = 0; i < expect.size(); ++i)
      expect[i] = (s.image.pixels[i] / 255.0f - set.spec().mean[i % 3]) / set.spec().std[i % 3];
    ASSERT_EQ(image_of[4].size(), expect.size() * 4);
    const float* got = reinterpret_cast<const float*>(image_of[4].data());
    for (size_t i = 0; i < expect.size(); ++i)
      ASSERT_NEAR(got[i], expect[i], 1e-5f) << i;

    std::multiset<int64_t> seen;
    for (int r = 0; r < 3; ++r) {
      LoaderOptions ro = o;
      ro.rank = r;
      ro.world_size = 3;
      Loader l(set, ro);
      for (const HostBatch& b : take(l, 100))
        for (size_t i = 0; i < b.indices.size(); ++i) {
          seen.insert(b.indices[i]);
          EXPECT_EQ(b.row(0, i), image_of[b.indices[i]]) << "sample " << b.indices[i];
        }
      EXPECT_EQ(l.next(), nullptr);  // stays at the end
    }
    std::multiset<int64_t> expected;
    for (int64_t i = 0; i < 11; ++i)
      expected.insert(i);
    EXPECT_EQ(seen, expected);

    LoaderOptions tiny = o;
    tiny.rank = 12;
    tiny.world_size = 13;  // 11 samples over 13 ranks: ranks 11 and 12 have none
    Loader empty(set, tiny);
    EXPECT_EQ(empty.batches(), 0);
    EXPECT_EQ(empty.next(), nullptr);
  });
}

// Evaluation with a centre crop larger than the image pads symmetrically: label 255,
// depth 0, image 0 around the unchanged image.
TEST_F(LoaderTest, EvaluationCentreCropPadsAroundTheImage) {
  make_scenes(dir(), 2, 32, 16, ImageEncoding::raw, 0, TaskKind::segmentation);
  const ShardSet set = ShardSet::open(dir());
  LoaderOptions o;
  o.mode = LoaderMode::eval;
  o.batch_size = 2;
  o.threads = 1;
  o.augment = AugmentOptions::dense_eval(EvalCrop::center, 20, 40);
  with_watchdog(60, [&] {
    Loader loader(set, o);
    const Batch* b = loader.next();
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->label.shape(), (core::Shape{2, 20, 40}));
    EXPECT_FALSE(b->depth.defined());
    const Sample s = set.read(1);
    const uint8_t* label = b->label.data<uint8_t>() + 20 * 40;
    for (int64_t y = 0; y < 20; ++y)
      for (int64_t x = 0; x < 40; ++x) {
        const int64_t sy = y - 2, sx = x - 4;
        const bool inside = sy >= 0 && sy < 16 && sx >= 0 && sx < 32;
        ASSERT_EQ(label[y * 40 + x], inside ? s.label[sy * 32 + sx] : 255) << y << "," << x;
      }
  });
}

// Classification: random resized crops of varying-size images come out at the
// requested size with their class ids, identically for 1 and 3 threads; evaluation
// resizes the shorter side and centre-crops.
TEST_F(LoaderTest, ClassificationCropsAndClassIds) {
  write_classification_set(dir(), 9, 4, [](int64_t i) {
    return std::pair<int64_t, int64_t>{20 + 3 * i, 40 - 2 * i};
  });
  const ShardSet set = ShardSet::open(dir());
  with_watchdog(60, [&] {
    LoaderOptions o;
    o.batch_size = 4;
    o.threads = 1;
    o.seed = 3;
    o.augment = AugmentOptions::classification_train(16);
    Loader one(set, o);
    o.threads = 3;
    Loader three(set, o);
    const std::vector<HostBatch> a = take(one, 4), b = take(three, 4);
    EXPECT_TRUE(a == b);
    const Batch* batch = one.next();
    EXPECT_EQ(batch->image.shape(), (core::Shape{4, 16, 16, 3}));
    EXPECT_EQ(batch->class_id.shape(), (core::Shape{4}));
    EXPECT_FALSE(batch->label.defined());
    for (int64_t r = 0; r < 4; ++r)
      EXPECT_EQ(batch->class_id.data<int32_t>()[r], set.class_id(batch->indices[r]));

    LoaderOptions e;
    e.mode = LoaderMode::eval;
    e.batch_size = 4;
    e.threads = 2;
    e.augment = AugmentOptions::classification_eval(16);
    Loader eval(set, e);
    int64_t rows = 0;
    while (const Batch* eb = eval.next()) {
      EXPECT_EQ(eb->image.dim(1), 16);
      EXPECT_EQ(eb->image.dim(2), 16);
      rows += eb->size();
    }
    EXPECT_EQ(rows, 9);
  });
  // The evaluation plan: shorter side 16 / 0.875 = 18, centre crop 16.
  const SamplePlan p = plan_sample(AugmentOptions::classification_eval(16),
                                   TaskKind::classification, 36, 24, 0, 0, 0);
  EXPECT_NEAR(p.scale, 18.0 / 24.0, 1e-9);
  EXPECT_EQ(p.x.valid_begin, 0);
  EXPECT_EQ(p.x.valid_end, 16);
  EXPECT_NEAR(p.x.origin, 1.0 * 24.0 / 18.0, 1e-9);  // (18 - 16) / 2 scaled pixels
}

TEST_F(LoaderTest, BadOptionsAreRefusedWithAReason) {
  make_scenes(dir(), 4, 32, 16);
  const ShardSet set = ShardSet::open(dir());
  auto refused = [&](LoaderOptions o, const std::string& part) {
    try {
      Loader l(set, o);
      ADD_FAILURE() << "accepted; expected an error with '" << part << "'";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), part)) << e.what();
    }
  };
  LoaderOptions o = train_options(2, 1, 8, 16);
  LoaderOptions bad = o;
  bad.prefetch = 0;
  refused(bad, "prefetch 0");
  bad = o;
  bad.image_dtype = core::DType::f16;
  refused(bad, "image dtype f16");
  bad = o;
  bad.label_dtype = core::DType::f32;
  refused(bad, "label dtype f32");
  bad = o;
  bad.batch_size = 5;  // 4 samples: an epoch of zero steps
  refused(bad, "fewer than one global batch");
  bad = o;
  bad.augment.min_scale = 0;
  refused(bad, "scale range");
  bad = o;
  bad.mode = LoaderMode::eval;
  refused(bad, "augment.train");
#ifndef COHORT_WITH_CUDA
  bad = o;
  bad.device = core::Device::cuda(0);
  refused(bad, "no CUDA backend");
#endif
}

}  // namespace
}  // namespace cohort::data

namespace cohort::data {
namespace {

// `run_data_bench` at full size (minutes; the numbers in docs/PERFORMANCE.md,
// "Data loading"). Disabled in the unit suite; run with
//   COHORT_BENCH_DIR=/tmp/cohort-bench-data COHORT_BENCH_MAX_THREADS=4
//     cohort_unit_tests --gtest_also_run_disabled_tests --gtest_filter='DataLoaderBench*'
TEST(DataLoaderBench, DISABLED_CityscapesShapedFrames) {
  DataBenchOptions o;
  if (const char* d = std::getenv("COHORT_BENCH_DIR")) o.dir = d;
  if (const char* t = std::getenv("COHORT_BENCH_MAX_THREADS")) o.max_threads = std::atoi(t);
  if (const char* e = std::getenv("COHORT_BENCH_STORAGE"))  // e.g. "raw,png"
    for (o.encodings.clear(); *e;) {
      const char* end = std::strchr(e, ',');
      const std::string name = end ? std::string(e, end) : std::string(e);
      o.encodings.push_back(parse_image_encoding(name, "COHORT_BENCH_STORAGE"));
      e = end ? end + 1 : e + name.size();
    }
  if (const char* k = std::getenv("COHORT_BENCH_KIND"))
    o.kind = parse_task_kind(k, "COHORT_BENCH_KIND");
  const std::vector<DataBenchRow> rows = run_data_bench(o);
  EXPECT_FALSE(rows.empty());
  for (const DataBenchRow& r : rows)
    EXPECT_GT(r.samples_per_s, 0);
}

}  // namespace
}  // namespace cohort::data
