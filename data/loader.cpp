#include "data/loader.hpp"

#include <fmt/format.h>

#include <array>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "core/error.hpp"
#include "data/loader_staging.hpp"
#include "data/parallel.hpp"

namespace cohort::data {
namespace {

enum Output : int { kImage = 0, kLabel, kDepth, kValid, kClass, kOutputs };

// One batch buffer. Workers write rows through `host`; the consumer gets `tensor`.
// CPU device: `tensor` is ordinary host memory and host == tensor.raw(). CUDA device:
// `host` is pinned memory (`host_storage`) copied into the device `tensor`.
struct Slot {
  std::array<std::shared_ptr<core::Storage>, kOutputs> host_storage;
  std::array<uint8_t*, kOutputs> host{};
  std::array<core::Tensor, kOutputs> tensor;
};

// A batch on its way: planned (indices and slot fixed) when the first of its rows is
// handed out, ready when every row is written (and, for a GPU, its copy queued).
struct Plan {
  int64_t seq = 0, epoch = 0, step = 0;
  std::vector<int64_t> indices;
  int slot = -1;
  size_t next_row = 0;  // next row to hand out
  size_t pending = 0;   // rows not finished
  std::string error;    // the first failure of one of its rows
  bool ready = false;
};

// One sample's work for a worker.
struct Item {
  int64_t seq = 0, epoch = 0, index = 0;
  int slot = -1;
  size_t row = 0;
};

}  // namespace

struct Loader::Impl {
  ShardSet set;
  LoaderOptions options;
  TaskKind kind = TaskKind::segmentation;
  int64_t out_h = 0, out_w = 0, channels = 0;
  std::array<core::Shape, kOutputs> row_shape;  // shape of one row (empty: absent)
  std::array<core::DType, kOutputs> dtype{};
  std::array<size_t, kOutputs> row_bytes{};  // 0: output absent
  int thread_count = 1;
  std::unique_ptr<detail::DeviceStaging> staging;
  std::vector<Slot> slots;

  // Producer state and the hand-off, under `mutex`.
  std::mutex mutex;
  std::condition_variable work_cv, ready_cv;
  std::optional<TrainSampler> producer;  // training: batches handed to workers
  std::optional<EvalSampler> eval;
  int64_t eval_next = 0;   // evaluation: next batch to plan
  std::deque<Plan> plans;  // planned, not yet delivered, in sequence order
  std::vector<int> free_slots;
  int64_t next_seq = 0;
  bool stop = false;  // workers must exit (destruction, restore)
  bool halt = false;  // a row failed: hand out no more work
  std::string fatal;  // a failure outside any batch (a worker could not start)
  std::vector<std::thread> workers;

  // Consumer state (the thread that calls next()).
  int held_slot = -1;
  core::StreamHandle held_stream = nullptr;
  std::string failed;  // what next() raised; raised again until restore()
  SamplerPosition position;
  int64_t eval_delivered = 0;
  Batch batch;

  Impl(ShardSet s, LoaderOptions o) : set(std::move(s)), options(std::move(o)) {}

  // ---- setup ----------------------------------------------------------------------
  void configure();
  void allocate_slots();
  void start_workers();
  void stop_workers();
  void reset_queue();

  // ---- workers ----------------------------------------------------------------------
  void worker_main();
  bool take_item(Item& item);
  bool plan_next();
  Plan& plan_of(int64_t seq) { return plans[static_cast<size_t>(seq - plans.front().seq)]; }
  std::string process(const Item& item, SampleBytes& bytes);
  std::string copy_to_device(const Plan& plan);

  // ---- consumer ---------------------------------------------------------------------
  void release_held();
  void fill_batch(const Plan& plan);
  std::string where(const Plan& plan) const;
};

void Loader::Impl::configure() {
  const DatasetSpec& spec = set.spec();
  kind = spec.kind;
  channels = spec.channels;
  const bool train = options.mode == LoaderMode::train;
  COHORT_CHECK(options.augment.train == train,
               fmt::format("data loader: augment.train is {} for a {} loader (use "
                           "AugmentOptions::dense_train/dense_eval or the classification presets)",
                           options.augment.train, train ? "training" : "evaluation"));
  options.augment.validate();
  COHORT_CHECK(options.prefetch >= 1,
               fmt::format("data loader: prefetch {} (must be >= 1)", options.prefetch));
  COHORT_CHECK(options.threads >= 0,
               fmt::format("data loader: threads {} (0 = all cores)", options.threads));
  COHORT_CHECK(options.image_dtype == core::DType::f32 || options.image_dtype == core::DType::bf16,
               fmt::format("data loader: image dtype {} (f32 or bf16)",
                           core::dtype_name(options.image_dtype)));
  COHORT_CHECK(options.label_dtype == core::DType::u8 || options.label_dtype == core::DType::i32,
               fmt::format("data loader: label dtype {} (u8 or i32)",
                           core::dtype_name(options.label_dtype)));
  COHORT_CHECK(kind == TaskKind::classification || spec.fixed_size(),
               fmt::format("data loader: the {} set {} has no fixed image size", to_string(kind),
                           set.dir()));
  output_size(options.augment, kind, spec.height, spec.width, out_h, out_w);
  COHORT_CHECK(out_h > 0 && out_w > 0,
               fmt::format("data loader: output size {}x{} for set {}", out_h, out_w, set.dir()));
  thread_count = resolve_threads(options.threads);

  const core::Shape map{out_h, out_w};
  row_shape[kImage] = core::Shape{out_h, out_w, channels};
  dtype[kImage] = options.image_dtype;
  if (has_label_map(kind)) {
    row_shape[kLabel] = map;
    dtype[kLabel] = options.label_dtype;
  }
  if (has_depth(kind)) {
    row_shape[kDepth] = map;
    dtype[kDepth] = core::DType::f32;
    row_shape[kValid] = map;
    dtype[kValid] = core::DType::u8;
  }
  if (has_class_id(kind)) {
    row_shape[kClass] = core::Shape{};
    dtype[kClass] = core::DType::i32;
    row_bytes[kClass] = 4;
  }
  for (int k = 0; k < kClass; ++k)
    if (row_shape[k].rank() > 0)
      row_bytes[k] = static_cast<size_t>(row_shape[k].numel()) * core::dtype_size(dtype[k]);

  if (train) {
    TrainSampler::Options so;
    so.dataset_size = set.size();
    so.batch_size = options.batch_size;
    so.rank = options.rank;
    so.world_size = options.world_size;
    so.seed = options.seed;
    so.shuffle = options.shuffle;
    producer.emplace(so);
    if (options.start) producer->restore(*options.start);
    position = producer->position();
  } else {
    eval.emplace(set.size(), options.batch_size, options.rank, options.world_size);
  }

  if (options.device.is_cuda()) {
#ifdef COHORT_WITH_CUDA
    staging = detail::make_cuda_staging(options.device, options.prefetch + 1);
#else
    COHORT_FAIL(fmt::format("data loader: device {}: this build of cohort has no CUDA backend",
                            options.device.str()));
#endif
  }
}

void Loader::Impl::allocate_slots() {
  const int64_t B = options.batch_size;
  slots.resize(static_cast<size_t>(options.prefetch + 1));
  for (Slot& slot : slots)
    for (int k = 0; k < kOutputs; ++k) {
      if (row_bytes[k] == 0) continue;
      std::vector<int64_t> dims{B};
      for (int d = 0; d < row_shape[k].rank(); ++d)
        dims.push_back(row_shape[k][d]);
      const core::Shape shape{std::span<const int64_t>(dims)};
      if (staging) {
        slot.host_storage[k] = core::allocate_pinned_storage(row_bytes[k] * B);
        slot.host[k] = static_cast<uint8_t*>(slot.host_storage[k]->data());
        slot.tensor[k] =
            core::Tensor::empty(shape, dtype[k], options.device, staging->copy_stream());
      } else {
        slot.tensor[k] = core::Tensor::empty(shape, dtype[k]);
        slot.host[k] = static_cast<uint8_t*>(slot.tensor[k].raw());
      }
    }
  reset_queue();
}

void Loader::Impl::reset_queue() {
  plans.clear();
  free_slots.clear();
  for (int s = static_cast<int>(slots.size()) - 1; s >= 0; --s)
    free_slots.push_back(s);
  next_seq = 0;
  eval_next = 0;
  eval_delivered = 0;
  stop = halt = false;
  fatal.clear();
  failed.clear();
  held_slot = -1;
  held_stream = nullptr;
}

void Loader::Impl::start_workers() {
  try {
    for (int t = 0; t < thread_count; ++t)
      workers.emplace_back([this] { worker_main(); });
  } catch (...) {
    stop_workers();
    throw;
  }
}

void Loader::Impl::stop_workers() {
  {
    std::lock_guard lock(mutex);
    stop = true;
  }
  work_cv.notify_all();
  for (std::thread& t : workers)
    t.join();
  workers.clear();
}

// ---- workers ----------------------------------------------------------------------

void Loader::Impl::worker_main() {
  if (staging) {
    try {
      staging->bind_thread();
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex);
      if (fatal.empty()) fatal = e.what();
      halt = true;
      ready_cv.notify_all();
      return;
    }
  }
  SampleBytes bytes;
  std::unique_lock lock(mutex);
  for (;;) {
    if (stop) return;
    Item item;
    if (halt || !take_item(item)) {
      work_cv.wait(lock);
      continue;
    }
    lock.unlock();
    const std::string error = process(item, bytes);
    lock.lock();
    // The plan stays in the deque until it is ready and delivered, and deque
    // references survive push_back/pop_front of other elements.
    Plan& plan = plan_of(item.seq);
    if (!error.empty()) {
      if (plan.error.empty()) plan.error = error;
      halt = true;
    }
    if (--plan.pending == 0 && plan.error.empty() && staging) {
      lock.unlock();
      const std::string copy_error = copy_to_device(plan);
      lock.lock();
      if (!copy_error.empty()) {
        plan.error = copy_error;
        halt = true;
      }
    }
    if (plan.pending == 0) plan.ready = true;
    if (plan.pending == 0 || !plan.error.empty()) ready_cv.notify_all();
  }
}

// Under the lock: the next row of the earliest batch that still has rows to hand out,
// planning a new batch when a slot is free. Handing rows out strictly in order means
// that when a row of batch k fails, every row of the batches before k is already being
// worked on, so the consumer receives those batches and then the error.
bool Loader::Impl::take_item(Item& item) {
  Plan* plan = nullptr;
  for (Plan& p : plans)
    if (p.next_row < p.indices.size()) {
      plan = &p;
      break;
    }
  if (!plan) {
    if (free_slots.empty() || !plan_next()) return false;
    plan = &plans.back();
  }
  item.seq = plan->seq;
  item.epoch = plan->epoch;
  item.slot = plan->slot;
  item.row = plan->next_row++;
  item.index = plan->indices[item.row];
  return true;
}

bool Loader::Impl::plan_next() {
  Plan p;
  if (producer) {
    p.epoch = producer->epoch();
    p.step = producer->step();
    p.indices = producer->next();
  } else {
    if (eval_next >= eval->batches()) return false;
    p.step = eval_next;
    p.indices = eval->batch(eval_next++);
  }
  p.seq = next_seq++;
  p.slot = free_slots.back();
  free_slots.pop_back();
  p.pending = p.indices.size();
  plans.push_back(std::move(p));
  return true;
}

std::string Loader::Impl::process(const Item& item, SampleBytes& bytes) {
  try {
    // The slot's pinned buffers may still be read by the copy of its previous batch.
    if (staging) staging->wait_host_free(item.slot);
    set.fetch(item.index, bytes);
    // The plan first: an encoded image is then decoded only as far as its crop needs.
    const auto [height, width, channels] = set.image_shape(item.index);
    const SamplePlan plan =
        plan_sample(options.augment, kind, height, width, options.seed, item.epoch, item.index);
    const ImageWindow window = source_window(plan, height, width);
    const Sample sample = set.decode(std::move(bytes), options.decode_window ? &window : nullptr);
    Slot& slot = slots[static_cast<size_t>(item.slot)];
    auto row = [&](int k) -> uint8_t* {
      return row_bytes[k] ? slot.host[k] + item.row * row_bytes[k] : nullptr;
    };
    SampleTarget target;
    target.image = row(kImage);
    target.image_dtype = dtype[kImage];
    target.label = row(kLabel);
    target.label_dtype = dtype[kLabel];
    target.depth = reinterpret_cast<float*>(row(kDepth));
    target.depth_valid = row(kValid);
    render_sample(sample, plan, set.spec(), target);
    if (row_bytes[kClass]) {
      const int32_t id = sample.class_id;
      std::memcpy(row(kClass), &id, sizeof(id));
    }
    return {};
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return fmt::format("sample {}: unknown exception", item.index);
  }
}

std::string Loader::Impl::copy_to_device(const Plan& plan) {
  try {
    const Slot& slot = slots[static_cast<size_t>(plan.slot)];
    std::vector<detail::CopyRegion> regions;
    for (int k = 0; k < kOutputs; ++k)
      if (row_bytes[k])
        regions.push_back({slot.tensor[k].raw(), slot.host[k], row_bytes[k] * plan.indices.size()});
    staging->copy(plan.slot, regions);
    return {};
  } catch (const std::exception& e) {
    return fmt::format("copying the batch to {}: {}", options.device.str(), e.what());
  }
}

// ---- consumer ---------------------------------------------------------------------

void Loader::Impl::release_held() {
  if (held_slot < 0) return;
  const int slot = held_slot;
  held_slot = -1;
  if (staging) staging->release(slot, held_stream);
  {
    std::lock_guard lock(mutex);
    free_slots.push_back(slot);
  }
  work_cv.notify_all();
}

std::string Loader::Impl::where(const Plan& plan) const {
  return producer ? fmt::format("data loader (rank {} of {}): epoch {} step {}", options.rank,
                                options.world_size, plan.epoch, plan.step)
                  : fmt::format("data loader (rank {} of {}): evaluation batch {}", options.rank,
                                options.world_size, plan.step);
}

void Loader::Impl::fill_batch(const Plan& plan) {
  const Slot& slot = slots[static_cast<size_t>(plan.slot)];
  const int64_t n = static_cast<int64_t>(plan.indices.size());
  batch.epoch = plan.epoch;
  batch.step = plan.step;
  batch.indices = plan.indices;
  std::array<core::Tensor, kOutputs> t;
  for (int k = 0; k < kOutputs; ++k)
    if (row_bytes[k]) t[k] = n == options.batch_size ? slot.tensor[k] : slot.tensor[k].slice(0, n);
  batch.image = t[kImage];
  batch.label = t[kLabel];
  batch.depth = t[kDepth];
  batch.depth_valid = t[kValid];
  batch.class_id = t[kClass];
}

// ---- Loader -----------------------------------------------------------------------

Loader::Loader(ShardSet set, LoaderOptions options)
    : m_impl(std::make_unique<Impl>(std::move(set), std::move(options))) {
  m_impl->configure();
  m_impl->allocate_slots();
  m_impl->start_workers();
}

Loader::~Loader() {
  Impl& m = *m_impl;
  m.stop_workers();
  if (m.staging) {
    try {
      if (m.held_slot >= 0) m.staging->release(m.held_slot, m.held_stream);
      m.staging->synchronize();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "data loader: while shutting down: %s\n", e.what());
    }
  }
}

const Batch* Loader::next(core::StreamHandle stream) {
  Impl& m = *m_impl;
  if (!m.failed.empty()) throw Error(m.failed);
  COHORT_CHECK(!m.staging || stream != nullptr,
               fmt::format("data loader: batches for {} need the consumer's stream in next()",
                           m.options.device.str()));
  m.release_held();
  std::unique_lock lock(m.mutex);
  if (m.eval && m.eval_delivered == m.eval->batches()) return nullptr;
  m.ready_cv.wait(lock, [&] {
    return !m.fatal.empty() ||
           (!m.plans.empty() && (m.plans.front().ready || !m.plans.front().error.empty()));
  });
  if (!m.fatal.empty() && (m.plans.empty() || !m.plans.front().ready)) {
    m.failed = fmt::format("data loader (rank {} of {}): {}", m.options.rank, m.options.world_size,
                           m.fatal);
    throw Error(m.failed);
  }
  Plan& front = m.plans.front();
  if (!front.error.empty()) {
    m.halt = true;
    m.failed = fmt::format("{}: {}", m.where(front), front.error);
    throw Error(m.failed);
  }
  const Plan plan = std::move(front);
  m.plans.pop_front();
  lock.unlock();

  m.held_slot = plan.slot;
  m.held_stream = stream;
  m.fill_batch(plan);
  if (m.producer) {
    const int64_t steps = m.producer->steps_per_epoch();
    m.position.epoch = plan.step + 1 == steps ? plan.epoch + 1 : plan.epoch;
    m.position.samples_done =
        plan.step + 1 == steps ? 0 : (plan.step + 1) * m.producer->global_batch();
  } else {
    ++m.eval_delivered;
  }
  if (m.staging) m.staging->acquire(plan.slot, stream);
  return &m.batch;
}

SamplerPosition Loader::position() const {
  COHORT_CHECK(m_impl->producer.has_value(),
               "data loader: position() is for training loaders (evaluation is not resumed)");
  return m_impl->position;
}

void Loader::restore(const SamplerPosition& position) {
  Impl& m = *m_impl;
  COHORT_CHECK(m.producer.has_value(),
               "data loader: restore() is for training loaders (evaluation is not resumed)");
  std::optional<TrainSampler> resumed;
  {
    std::lock_guard lock(m.mutex);  // workers advance the producer under the lock
    resumed = *m.producer;
  }
  resumed->restore(position);  // throws before anything is torn down
  m.stop_workers();
  if (m.staging) {
    if (m.held_slot >= 0) m.staging->release(m.held_slot, m.held_stream);
    m.staging->synchronize();
  }
  m.reset_queue();
  m.producer = std::move(resumed);
  m.position = m.producer->position();
  m.start_workers();
}

int64_t Loader::steps_per_epoch() const {
  COHORT_CHECK(m_impl->producer.has_value(),
               "data loader: steps_per_epoch() is for training loaders");
  return m_impl->producer->steps_per_epoch();
}

int64_t Loader::batches() const {
  COHORT_CHECK(m_impl->eval.has_value(), "data loader: batches() is for evaluation loaders");
  return m_impl->eval->batches();
}

int Loader::threads() const {
  return m_impl->thread_count;
}
int64_t Loader::height() const {
  return m_impl->out_h;
}
int64_t Loader::width() const {
  return m_impl->out_w;
}
const ShardSet& Loader::shards() const {
  return m_impl->set;
}
const LoaderOptions& Loader::options() const {
  return m_impl->options;
}

}  // namespace cohort::data
