// Checkpoints of ZeRO runs that load at any stage and world size (issue #3),
// on CPU ranks with the MPI backend, run under mpirun -np 1, 2, 4:
//  - saved at stage s, loaded at stage t (pairs covering 0-3, AdamW and SGD with
//    momentum, a loss scaler): parameters, buffers, gathered optimizer state,
//    optimizer steps, RNG state and scaler state are bitwise the saved run's,
//    and two more steps in both runs give bitwise equal parameters and state;
//  - a plain single-process checkpoint (io::save_training_checkpoint on rank 0)
//    loads into a ZeRO-2/3 run on every rank with exact state, and a ZeRO
//    checkpoint written by N ranks loads into a plain single-process run;
//  - errors end alike on every rank, without a hang and without a change: a
//    missing file, a file one rank cannot read, ranks that read different
//    files, a checkpoint of another model (every mismatched entry listed, the
//    engine untouched), and an unwritable path (rank 0's message, no file).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "comm/zero.hpp"
#include "comm/zero_checkpoint.hpp"
#include "core/io/training_state.hpp"
#include "core/nn/layers.hpp"
#include "core/optim/loss_scaler.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"

namespace cohort::comm {
namespace {

using core::Context;
using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;
using core::io::TrainingProgress;
using mpitest::world_rank;
using mpitest::world_size;

namespace fs = std::filesystem;
using State = std::map<std::string, Tensor>;

double learning_rate(const std::string& kind) {
  return kind == "sgd" ? 0.1 : 0.01;
}

// conv(+bias)-BN(ReLU)-pool-flatten-fc1 (16 -> 8)-ReLU-fc2 (8 -> 3)-CE: 247
// parameters, cut by the shard boundaries at 2 and 4 ranks. `other` builds
// another model (no conv bias, fc2 8 -> 5) with mostly the same names.
void build_net(core::nn::Graph& g, core::nn::NodeId& loss, uint64_t seed, bool other = false) {
  using namespace core::nn;
  const NodeId x = g.input("image");
  const NodeId y = g.input("label");
  NodeId h = mpitest::add_conv_features(g, x, /*conv_bias=*/!other);
  h = g.add("relu", std::make_unique<ReLU>(), {h});
  h = g.add("fc2", std::make_unique<Linear>(8, other ? 5 : 3), {h});
  loss = g.add("loss", std::make_unique<CrossEntropyLoss>(), {h, y});
  g.build(Device::cpu(), seed);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void expect_bitwise(const State& got, const State& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [name, t] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << what << ": no '" << name << "'";
    EXPECT_TRUE(bitwise_equal(it->second, t)) << what << ": '" << name << "' differs";
  }
}

State clone_all(const State& in) {
  State out;
  for (const auto& [name, t] : in)
    out.emplace(name, t.clone());
  return out;
}

// Collective: whether `text` is the same on every rank.
bool same_on_every_rank(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text)
    h = (h ^ c) * 1099511628211ull;
  std::vector<uint64_t> all(static_cast<size_t>(world_size()));
  MPI_Allgather(&h, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
  for (uint64_t x : all)
    if (x != all[0]) return false;
  return true;
}

// A directory every rank sees (rank 0 makes it and broadcasts its name);
// removed by rank 0 once every rank is done with it.
class SharedDir {
 public:
  SharedDir() {
    std::string name;
    if (world_rank() == 0) {
      std::string pattern = (fs::temp_directory_path() / "cohort-zero-ckpt-XXXXXX").string();
      COHORT_CHECK(::mkdtemp(pattern.data()) != nullptr, "mkdtemp failed");
      name = pattern;
    }
    int length = static_cast<int>(name.size());
    MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
    name.resize(static_cast<size_t>(length));
    MPI_Bcast(name.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
    m_path = name;
  }
  ~SharedDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0) {
      std::error_code ignored;
      fs::remove_all(m_path, ignored);
    }
  }
  std::string file(const std::string& name) const { return (fs::path(m_path) / name).string(); }
  const std::string& path() const { return m_path; }

 private:
  std::string m_path;
};

// One ZeRO training run of the test net on all ranks.
struct ZeroRun {
  core::nn::Graph g;
  core::nn::NodeId loss = -1;
  Context ctx;
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<ZeroDataParallel> zero;
  std::string optimizer;

  ZeroRun(int stage, const std::string& kind, uint64_t seed, bool other = false) : optimizer(kind) {
    build_net(g, loss, seed, other);
    comm = mpitest::make_comm();
    ZeroOptions o;
    o.stage = stage;
    zero = std::make_unique<ZeroDataParallel>(g, *comm, o, mpitest::optimizer_config(kind));
  }
  void steps(int first, int count) {
    for (int s = first; s < first + count; ++s) {
      Tensor images, labels;
      mpitest::global_batch(s, /*seed_base=*/500, /*label_stride=*/5, images, labels);
      mpitest::forward_backward(g, loss, ctx, images, labels, world_rank(), world_size(), 1,
                                [&](int) { zero->prepare_backward(ctx); });
      zero->finish_backward(ctx);
      zero->step(ctx, learning_rate(optimizer));
    }
  }
  // Collective (stage 3). All parameters, on every rank.
  Tensor params() { return zero->gather_parameters(ctx).clone(); }
  // Collective. The whole optimizer state on rank 0 (empty elsewhere).
  State optimizer_state() { return clone_all(zero->gather_optimizer_state(ctx)); }
  State buffers() {
    State out;
    for (const core::nn::Buffer& b : g.buffers())
      out.emplace(b.name, b.value.clone());
    return out;
  }
};

// A plain single-process run (no communicator, unsharded optimizer) on the whole
// global batch.
struct PlainRun {
  core::nn::Graph g;
  core::nn::NodeId loss = -1;
  Context ctx;
  std::unique_ptr<core::optim::Optimizer> opt;
  std::string optimizer;

  PlainRun(const std::string& kind, uint64_t seed, bool other = false) : optimizer(kind) {
    build_net(g, loss, seed, other);
    opt = std::make_unique<core::optim::Optimizer>(g, mpitest::optimizer_config(kind));
  }
  void steps(int first, int count) {
    for (int s = first; s < first + count; ++s) {
      Tensor images, labels;
      mpitest::global_batch(s, 500, 5, images, labels);
      mpitest::forward_backward(g, loss, ctx, images, labels, 0, 1, 1, [](int) {});
      opt->step(ctx, learning_rate(optimizer));
    }
  }
  State buffers() {
    State out;
    for (const core::nn::Buffer& b : g.buffers())
      out.emplace(b.name, b.value.clone());
    return out;
  }
};

// Rank 0's tensor on every rank.
Tensor from_rank0(const Tensor& t, const Shape& shape) {
  Tensor out = world_rank() == 0 ? t.clone() : Tensor::zeros(shape, DType::f32);
  MPI_Bcast(out.raw(), static_cast<int>(out.nbytes()), MPI_BYTE, 0, MPI_COMM_WORLD);
  return out;
}

State from_rank0(const State& rank0, const State& shapes) {
  State out;
  for (const auto& [name, t] : shapes)
    out.emplace(name, from_rank0(world_rank() == 0 ? rank0.at(name) : Tensor(), t.shape()));
  return out;
}

void save_then_load(int save_stage, int load_stage, const std::string& kind, bool with_scaler) {
  SCOPED_TRACE(fmt::format("ZeRO-{} -> ZeRO-{}, {}, {} rank(s)", save_stage, load_stage, kind,
                           world_size()));
  SharedDir dir;
  const std::string path = dir.file("ckpt.h5");
  core::optim::LossScalerConfig fp16;
  fp16.enabled = true;
  core::optim::LossScaler scaler_a(fp16, Device::cpu()), scaler_b(fp16, Device::cpu());

  ZeroRun a(save_stage, kind, /*seed=*/23);
  a.ctx.set_seed(1234, 77);
  a.steps(0, 3);
  if (with_scaler) scaler_a.set_state(a.ctx, {512.0, 5, 2});
  const TrainingProgress progress{3, 1, 24, "model: zero-checkpoint-test"};
  save_zero_checkpoint(path, *a.zero, a.g, with_scaler ? &scaler_a : nullptr, a.ctx, progress);
  EXPECT_TRUE(fs::exists(path));
  const Tensor saved_params = a.params();
  const State saved_state = a.optimizer_state(), saved_buffers = a.buffers();

  // Another initialisation: a load that did nothing could not pass.
  ZeroRun b(load_stage, kind, /*seed=*/5);
  EXPECT_FALSE(bitwise_equal(b.params(), saved_params));
  const TrainingProgress p =
      load_zero_checkpoint(path, *b.zero, b.g, with_scaler ? &scaler_b : nullptr, b.ctx);
  EXPECT_EQ(p.step, 3);
  EXPECT_EQ(p.epoch, 1);
  EXPECT_EQ(p.sample_in_epoch, 24);
  EXPECT_EQ(p.config, progress.config);
  EXPECT_TRUE(bitwise_equal(b.params(), saved_params));
  expect_bitwise(b.buffers(), saved_buffers, "buffers");
  const State loaded_state = b.optimizer_state();
  if (world_rank() == 0) expect_bitwise(loaded_state, saved_state, "optimizer state");
  EXPECT_EQ(b.zero->optimizer().steps(), 3);
  EXPECT_EQ(b.ctx.seed(), 1234u);
  EXPECT_EQ(b.ctx.rng_offset(), 77u);
  if (with_scaler) {
    const core::optim::LossScalerState s = scaler_b.state(b.ctx);
    EXPECT_EQ(s.scale, 512.0);
    EXPECT_EQ(s.growth_tracker, 5);
    EXPECT_EQ(s.skipped_steps, 2);
  }

  // Both go on from the same state.
  a.steps(3, 2);
  b.steps(3, 2);
  EXPECT_TRUE(bitwise_equal(b.params(), a.params())) << "parameters after two more steps";
  const State a_after = a.optimizer_state(), b_after = b.optimizer_state();
  if (world_rank() == 0) expect_bitwise(b_after, a_after, "optimizer state after two more steps");
}

TEST(ZeroCheckpoint, LoadsAtAnotherStageWithExactState) {
  save_then_load(0, 3, "adamw", /*with_scaler=*/true);
  save_then_load(3, 1, "adamw", false);
  save_then_load(1, 2, "adamw", false);
  save_then_load(2, 0, "adamw", false);
  save_then_load(3, 2, "sgd", true);
}

// A single-process checkpoint (rank 0, no communicator) into ZeRO-2 and -3 on
// every rank.
TEST(ZeroCheckpoint, PlainSingleProcessCheckpointLoadsIntoZero) {
  SharedDir dir;
  const std::string path = dir.file("plain.h5");
  Tensor plain_params;
  State plain_state, plain_buffers;
  if (world_rank() == 0) {
    PlainRun plain("adamw", 23);
    plain.ctx.set_seed(42, 9);
    plain.steps(0, 3);
    core::io::save_training_checkpoint(path, plain.g, *plain.opt, nullptr, plain.ctx,
                                       {3, 0, 24, "plain"});
    plain_params = plain.g.flat_params().clone();
    plain_state = clone_all(plain.opt->state());
    plain_buffers = plain.buffers();
  }
  MPI_Barrier(MPI_COMM_WORLD);  // the file exists before any rank reads it
  for (int stage : {2, 3}) {
    SCOPED_TRACE(fmt::format("into ZeRO-{} on {} rank(s)", stage, world_size()));
    ZeroRun z(stage, "adamw", 5);
    const Tensor expected_params = from_rank0(plain_params, Shape{z.g.num_parameters()});
    const State expected_buffers = from_rank0(plain_buffers, z.buffers());
    const TrainingProgress p = load_zero_checkpoint(path, *z.zero, z.g, nullptr, z.ctx);
    EXPECT_EQ(p.step, 3);
    EXPECT_EQ(p.config, "plain");
    EXPECT_TRUE(bitwise_equal(z.params(), expected_params));
    expect_bitwise(z.buffers(), expected_buffers, "buffers");
    const State state = z.optimizer_state();
    if (world_rank() == 0) expect_bitwise(state, plain_state, "optimizer state");
    EXPECT_EQ(z.zero->optimizer().steps(), 3);
    EXPECT_EQ(z.ctx.seed(), 42u);
    EXPECT_EQ(z.ctx.rng_offset(), 9u);
  }
}

// A checkpoint written by N ranks into a plain single-process run on rank 0.
TEST(ZeroCheckpoint, ZeroCheckpointLoadsIntoAPlainSingleProcessRun) {
  SharedDir dir;
  for (int stage : {1, 3}) {
    for (const char* kind : {"adamw", "sgd"}) {
      SCOPED_TRACE(
          fmt::format("ZeRO-{} {} on {} rank(s) -> one process", stage, kind, world_size()));
      const std::string path = dir.file(fmt::format("zero{}-{}.h5", stage, kind));
      ZeroRun z(stage, kind, 23);
      z.ctx.set_seed(7, 31);
      z.steps(0, 3);
      save_zero_checkpoint(path, *z.zero, z.g, nullptr, z.ctx, {3, 2, 16, "zero"});
      const Tensor params = z.params();
      const State state = z.optimizer_state(), buffers = z.buffers();
      if (world_rank() != 0) continue;  // one process loads it; the others wait in SharedDir
      PlainRun plain(kind, 5);
      const TrainingProgress p =
          core::io::load_training_checkpoint(path, plain.g, *plain.opt, nullptr, plain.ctx);
      EXPECT_EQ(p.step, 3);
      EXPECT_EQ(p.epoch, 2);
      EXPECT_EQ(p.sample_in_epoch, 16);
      EXPECT_TRUE(bitwise_equal(plain.g.flat_params(), params));
      expect_bitwise(plain.buffers(), buffers, "buffers");
      expect_bitwise(plain.opt->state(), state, "optimizer state");
      EXPECT_EQ(plain.opt->steps(), 3);
      EXPECT_EQ(plain.ctx.seed(), 7u);
      EXPECT_EQ(plain.ctx.rng_offset(), 31u);
    }
  }
}

// Catches the error every rank must throw; returns its message ("" if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(ZeroCheckpoint, AMissingFileFailsOnEveryRank) {
  SharedDir dir;
  const std::string missing = dir.file("no-such-checkpoint.h5");
  ZeroRun z(3, "adamw", 23);
  const Tensor before = z.params();
  const std::string m =
      error_of([&] { load_zero_checkpoint(missing, *z.zero, z.g, nullptr, z.ctx); });
  ASSERT_FALSE(m.empty()) << "expected every rank to throw";
  EXPECT_TRUE(contains(m, missing)) << m;
  EXPECT_TRUE(contains(m, fmt::format("of {}", world_size()))) << m;
  EXPECT_TRUE(same_on_every_rank(m)) << m;
  EXPECT_TRUE(bitwise_equal(z.params(), before));
}

// Only one rank cannot read its file (or reads another one than rank 0): every
// rank throws, naming that rank, and nothing is loaded anywhere.
TEST(ZeroCheckpoint, OneRankFailingStopsEveryRank) {
  if (world_size() < 2) GTEST_SKIP() << "needs two ranks";
  SharedDir dir;
  const int last = world_size() - 1;
  const std::string good = dir.file("good.h5"), later = dir.file("later.h5");
  {
    ZeroRun a(2, "adamw", 23);
    a.steps(0, 1);
    save_zero_checkpoint(good, *a.zero, a.g, nullptr, a.ctx, {1, 0, 8, ""});
    a.steps(1, 1);
    save_zero_checkpoint(later, *a.zero, a.g, nullptr, a.ctx, {2, 0, 16, ""});
  }
  ZeroRun z(3, "adamw", 5);
  const Tensor before = z.params();
  const std::string missing = dir.file("only-on-some-ranks.h5");
  std::string m = error_of([&] {
    load_zero_checkpoint(world_rank() == last ? missing : good, *z.zero, z.g, nullptr, z.ctx);
  });
  ASSERT_FALSE(m.empty()) << "expected every rank to throw";
  EXPECT_TRUE(contains(m, fmt::format("failed on rank {} of {}", last, world_size()))) << m;
  EXPECT_TRUE(contains(m, missing)) << m;
  EXPECT_TRUE(bitwise_equal(z.params(), before));
  EXPECT_EQ(z.zero->optimizer().steps(), 0);

  m = error_of([&] {
    load_zero_checkpoint(world_rank() == last ? later : good, *z.zero, z.g, nullptr, z.ctx);
  });
  ASSERT_FALSE(m.empty()) << "ranks that read different files must be refused";
  EXPECT_TRUE(contains(m, "another checkpoint than rank 0")) << m;
  EXPECT_TRUE(contains(m, fmt::format("rank {}", last))) << m;
  EXPECT_TRUE(bitwise_equal(z.params(), before));
  EXPECT_EQ(z.zero->optimizer().steps(), 0);
}

TEST(ZeroCheckpoint, AnotherModelIsRefusedOnEveryRankAndChangesNothing) {
  SharedDir dir;
  const std::string path = dir.file("other-model.h5");
  if (world_rank() == 0) {
    PlainRun other("adamw", 23, /*other=*/true);
    other.steps(0, 1);
    core::io::save_training_checkpoint(path, other.g, *other.opt, nullptr, other.ctx, {});
  }
  MPI_Barrier(MPI_COMM_WORLD);
  for (int stage : {0, 3}) {
    SCOPED_TRACE(fmt::format("ZeRO-{}", stage));
    ZeroRun z(stage, "adamw", 5);
    z.ctx.set_seed(3, 4);
    z.steps(0, 1);
    const Tensor params = z.params();
    const State state = z.optimizer_state(), buffers = z.buffers();
    const std::string m =
        error_of([&] { load_zero_checkpoint(path, *z.zero, z.g, nullptr, z.ctx); });
    ASSERT_FALSE(m.empty()) << "expected every rank to throw";
    for (const char* entry : {"model/conv.bias", "model/fc2.weight", "model/fc2.bias",
                              "optim/exp_avg/fc2.weight", "optim/exp_avg_sq/conv.bias"})
      EXPECT_TRUE(contains(m, entry)) << entry << " missing from: " << m;
    EXPECT_FALSE(contains(m, "fc1.weight")) << "fc1 matches and must not be listed: " << m;
    EXPECT_TRUE(same_on_every_rank(m)) << m;
    EXPECT_TRUE(bitwise_equal(z.params(), params));
    expect_bitwise(z.buffers(), buffers, "buffers");
    const State after = z.optimizer_state();
    if (world_rank() == 0) expect_bitwise(after, state, "optimizer state");
    EXPECT_EQ(z.zero->optimizer().steps(), 1);
    EXPECT_EQ(z.ctx.seed(), 3u);
    EXPECT_EQ(z.ctx.rng_offset(), 4u);
  }
}

TEST(ZeroCheckpoint, AnUnwritablePathFailsOnEveryRankAndLeavesNoFile) {
  SharedDir dir;
  // Not even root can create a file below a regular file.
  const std::string blocker = dir.file("a-file");
  if (world_rank() == 0) std::fclose(std::fopen(blocker.c_str(), "w"));
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string path = blocker + "/ckpt.h5";
  for (int stage : {1, 3}) {
    SCOPED_TRACE(fmt::format("ZeRO-{}", stage));
    ZeroRun z(stage, "sgd", 23);
    z.steps(0, 1);
    const std::string m =
        error_of([&] { save_zero_checkpoint(path, *z.zero, z.g, nullptr, z.ctx, {}); });
    ASSERT_FALSE(m.empty()) << "expected every rank to throw";
    EXPECT_TRUE(contains(m, fmt::format("failed on rank 0 of {}", world_size()))) << m;
    EXPECT_TRUE(contains(m, "write_checkpoint")) << "rank 0's own message: " << m;
    EXPECT_TRUE(contains(m, path)) << m;
    EXPECT_TRUE(same_on_every_rank(m)) << m;
    // The run goes on: the engine still steps together on every rank.
    z.steps(1, 1);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    std::vector<std::string> left;
    for (const auto& entry : fs::directory_iterator(dir.path()))
      left.push_back(entry.path().filename().string());
    EXPECT_EQ(left, std::vector<std::string>{"a-file"}) << "no checkpoint and no temporary file";
  }
}

}  // namespace
}  // namespace cohort::comm
