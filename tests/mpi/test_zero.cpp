// Sharded data parallelism (ZeRO stages 1-3) on CPU ranks with the MPI backend,
// run under mpirun -np 1, 2, 4. Every stage is compared with plain DataParallel
// (+ an unsharded optimizer) on the same global batches: after 10 SGD-with-
// momentum steps and after 10 AdamW steps on a conv-BN(SyncBN)-ReLU-pool-MLP
// network, parameters agree within kTolerance, and they are bitwise identical
// across ranks after every step. Also: per-rank optimizer state is shard sized,
// ZeRO-2/3 keep shard-sized gradients, ZeRO-3 keeps shard-sized parameters
// between layers (a probe layer asks the memory report mid-forward/backward),
// frozen parameters never change, the optimizer state gathered to rank 0 equals
// the plain optimizer's by name, loading it back round-trips, and the memory
// table of a plan matches the layout. Stages 2/3 reduce gradient buckets to
// their owners (payload counted), and stage 3's prefetch of the next layer
// changes nothing bitwise and holds at most two layers.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "comm/data_parallel.hpp"
#include "comm/zero.hpp"
#include "core/nn/layers.hpp"
#include "core/optim/optimizer.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"
#include "tests/support/gradcheck.hpp"

namespace cohort::comm {
namespace {

using core::Context;
using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;

// ZeRO against plain data parallelism, relative to |reference| + 1e-3. Stages 2
// and 3 reduce gradients with other collectives (bucket sizes, reduce-scatter),
// whose summation order MPI may choose differently, so only closeness is the
// contract (observed with Open MPI at -np 1/2/4: bitwise equal after 10 steps;
// ~2e-7 with micro-batches, which stages 2/3 reduce one at a time). ZeRO-1 issues
// exactly DataParallel's collectives and the same per-element update: bitwise.
constexpr double kTolerance = 1e-5;

using mpitest::fingerprint;
using mpitest::max_relative_difference;
using mpitest::optimizer_config;
using mpitest::world_rank;
using mpitest::world_size;

// Identity layer that calls `probe` in forward and backward: lets a test look at
// the engine between two layers.
class Probe : public core::nn::Layer {
 public:
  std::function<void()> probe;
  std::string kind() const override { return "Probe"; }
  Tensor forward(Context&, const std::vector<Tensor>& in, core::nn::Saved&,
                 const core::nn::ForwardArgs&) override {
    if (probe) probe();
    return in[0];
  }
  std::vector<Tensor> backward(Context&, const Tensor& dy, core::nn::Saved&,
                               const core::nn::BackwardArgs&) override {
    if (probe) probe();
    return {dy};
  }
};

// conv(+bias)-BN -> probe -> pool -> flatten -> fc1 -> ReLU -> fc2 -> CE.
// 247 parameters: with 2 or 4 ranks the shard boundaries cut parameters.
struct Net {
  core::nn::Graph g;
  core::nn::NodeId loss;
  Probe* probe = nullptr;
  Net() {
    const core::nn::NodeId x = g.input("image");
    const core::nn::NodeId y = g.input("label");
    auto p = std::make_unique<Probe>();
    probe = p.get();
    const core::nn::NodeId features =
        mpitest::add_conv_features(g, x, /*conv_bias=*/true, std::move(p));
    loss = mpitest::add_classifier(g, features, y);
    g.build(Device::cpu(), 23);
  }
};

bool identical_across_ranks(const Tensor& t) {
  const std::vector<uint64_t> all = mpitest::fingerprints_of_all_ranks(t);
  for (uint64_t f : all)
    if (f != all[0]) return false;
  return true;
}

double learning_rate(const std::string& kind) {
  return kind == "sgd" ? 0.1 : 0.01;
}

struct TrainRun {
  int stage = -1;  // -1: plain DataParallel + unsharded Optimizer
  std::string optimizer = "sgd";
  ZeroOptions zero;
  int steps = 10;
  int micro = 1;
  const char* frozen = nullptr;
  double clip = 0;  // > 0: clip_grad_norm before each step
  // After each backward, an inference forward up to fc1 only (stage 3: the
  // prefetch of fc2 is never used).
  bool partial_forward = false;
};

struct Result {
  Tensor params;                        // all N, after the last step
  std::map<std::string, Tensor> state;  // optimizer state by name (rank 0; plain: all ranks)
  ZeroMemory memory;                    // between steps (ZeRO only)
  std::vector<double> norms;            // clip_grad_norm results
  bool identical_every_step = true;
  int64_t largest_layer_bytes = 0;
  int64_t largest_adjacent_layers_bytes = 0;  // two layers with parameters, in node order
  int64_t fc1_bytes = 0;
  int64_t most_params_between_layers = 0;  // seen by the probe (stage 3)
  // What the training steps issued (not the final gathers).
  Communicator::Totals all_reduce, reduce, broadcast;
};

Result train(const TrainRun& run) {
  Net net;
  if (run.frozen) net.g.set_trainable(run.frozen, false);
  Context ctx;
  auto comm = mpitest::make_comm();
  const int w = world_size(), r = world_rank();
  std::unique_ptr<DataParallel> dp;
  std::unique_ptr<core::optim::Optimizer> plain;
  std::unique_ptr<ZeroDataParallel> zero;
  Result result;
  int64_t previous_bytes = 0;
  for (int id = 0; id < net.g.num_nodes(); ++id) {
    int64_t bytes = 0;
    if (net.g.layer(id))
      for (const core::nn::Parameter* p : net.g.layer(id)->params())
        bytes += p->shape.numel() * 4;
    if (bytes == 0) continue;
    result.largest_layer_bytes = std::max(result.largest_layer_bytes, bytes);
    result.largest_adjacent_layers_bytes =
        std::max(result.largest_adjacent_layers_bytes, previous_bytes + bytes);
    previous_bytes = bytes;
    if (net.g.node_name(id) == "fc1") result.fc1_bytes = bytes;
  }
  if (run.stage < 0) {
    dp = std::make_unique<DataParallel>(net.g, *comm, DataParallelOptions{});
    dp->broadcast_state(ctx);
    plain = std::make_unique<core::optim::Optimizer>(net.g, optimizer_config(run.optimizer));
  } else {
    ZeroOptions o = run.zero;
    o.stage = run.stage;
    zero = std::make_unique<ZeroDataParallel>(net.g, *comm, o, optimizer_config(run.optimizer));
    if (run.stage == 3)
      net.probe->probe = [&] {
        result.most_params_between_layers =
            std::max(result.most_params_between_layers, zero->memory().parameters);
      };
  }
  for (int s = 0; s < run.steps; ++s) {
    Tensor images, labels;
    mpitest::global_batch(s, /*seed_base=*/900, /*label_stride=*/5, images, labels);
    mpitest::forward_backward(net.g, net.loss, ctx, images, labels, r, w, run.micro, [&](int k) {
      if (dp) dp->prepare_backward(ctx, k == run.micro - 1);
      if (zero) zero->prepare_backward(ctx, k > 0, k == run.micro - 1);
    });
    const double lr = learning_rate(run.optimizer);
    if (run.partial_forward)
      net.g.forward(ctx, {{"image", images}}, {.training = false}, {net.g.node("fc1")});
    if (dp) {
      dp->finish_backward(ctx);
      if (run.clip > 0)
        result.norms.push_back(dp->clip_grad_norm(ctx, run.clip).item(ctx.stream()));
      plain->step(ctx, lr);
    } else {
      zero->finish_backward(ctx);
      if (run.clip > 0)
        result.norms.push_back(zero->clip_grad_norm(ctx, run.clip).item(ctx.stream()));
      zero->step(ctx, lr);
    }
    if (s == run.steps - 1) {
      result.all_reduce = comm->totals(CollectiveOp::all_reduce);
      result.reduce = comm->totals(CollectiveOp::reduce);
      result.broadcast = comm->totals(CollectiveOp::broadcast);
    }
    const Tensor now = zero ? zero->gather_parameters(ctx) : net.g.flat_params();
    result.identical_every_step = result.identical_every_step && identical_across_ranks(now);
  }
  if (zero) {
    result.params = zero->gather_parameters(ctx).clone();
    result.memory = zero->memory();
    result.state = zero->gather_optimizer_state(ctx);
  } else {
    result.params = net.g.flat_params().clone();
    for (const auto& [name, t] : plain->state())
      result.state.emplace(name, t.clone());
  }
  return result;
}

void expect_same_state(const std::map<std::string, Tensor>& zero,
                       const std::map<std::string, Tensor>& plain, double tolerance) {
  ASSERT_EQ(zero.size(), plain.size());
  for (const auto& [name, t] : plain) {
    auto it = zero.find(name);
    ASSERT_NE(it, zero.end()) << name;
    EXPECT_TRUE(it->second.shape() == t.shape()) << name << ": " << it->second.str();
    EXPECT_LT(max_relative_difference(it->second, t), tolerance) << name;
  }
}

void check_stage_against_plain(int stage, const std::string& optimizer, ZeroOptions options = {}) {
  SCOPED_TRACE(fmt::format(
      "ZeRO-{} {} on {} rank(s), buckets of {} B, {}", stage, optimizer, world_size(),
      options.bucket_bytes,
      options.grad_reduction == GradReduction::bucketed ? "bucketed" : "reduce_scatter"));
  TrainRun plain_run;
  plain_run.optimizer = optimizer;
  const Result plain = train(plain_run);
  TrainRun zero_run = plain_run;
  zero_run.stage = stage;
  zero_run.zero = options;
  const Result zero = train(zero_run);
  EXPECT_TRUE(zero.identical_every_step) << "parameters differ across ranks";
  const double tolerance = stage == 1 ? 1e-300 : kTolerance;  // ZeRO-1: exactly 0
  if (stage == 1 || optimizer != "adamw") {
    EXPECT_LT(max_relative_difference(zero.params, plain.params), tolerance);
  } else {
    // conv.bias feeds BatchNorm, which cancels any per-channel shift: its true
    // gradient is 0 and backward computes rounding noise, whose value depends on
    // the reduction's summation order (the reduces of stages 2/3 may add in
    // another order than DataParallel's all-reduce). SGD moves it by noise-sized
    // steps; AdamW normalises the noise to steps of up to about lr (observed at
    // -np 4 with 64 B buckets: up to 4e-4 after 10 steps). It is held to one
    // step's worth, every other parameter to kTolerance.
    Net names;
    const core::nn::Parameter& bias = names.g.parameter("conv.bias");
    const int64_t lo = bias.offset, hi = bias.offset + bias.shape.numel(), n = plain.params.numel();
    EXPECT_LT(max_relative_difference(zero.params.flat(0, lo), plain.params.flat(0, lo)),
              tolerance);
    EXPECT_LT(max_relative_difference(zero.params.flat(hi, n - hi), plain.params.flat(hi, n - hi)),
              tolerance);
    const std::vector<double> a = zero.params.flat(lo, hi - lo).to_vector();
    const std::vector<double> b = plain.params.flat(lo, hi - lo).to_vector();
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_LE(std::abs(a[i] - b[i]), learning_rate(optimizer)) << "conv.bias[" << i << "]";
  }
  if (world_rank() == 0) expect_same_state(zero.state, plain.state, tolerance);
}

TEST(Zero, ShardLayoutCoversTheParametersOnce) {
  const ShardLayout l = ShardLayout::make(247, 4);
  EXPECT_EQ(l.shard_size, 62);
  EXPECT_EQ(l.padded(), 248);
  EXPECT_EQ(l.begin(3), 186);
  EXPECT_EQ(l.count(3), 61);
  EXPECT_EQ(l.owner(185), 2);
  const ShardLayout tiny = ShardLayout::make(3, 4);  // more ranks than elements
  EXPECT_EQ(tiny.shard_size, 1);
  EXPECT_EQ(tiny.count(3), 0);
  EXPECT_EQ(tiny.begin(3), 3);
}

TEST(Zero, Stage1EqualsDataParallelSgdAndAdamW) {
  check_stage_against_plain(1, "sgd");
  check_stage_against_plain(1, "adamw");
}

TEST(Zero, Stage2EqualsDataParallelSgdAndAdamW) {
  check_stage_against_plain(2, "sgd");
  check_stage_against_plain(2, "adamw");
  ZeroOptions small;
  small.bucket_bytes = 64;  // many buckets in flight at once
  check_stage_against_plain(2, "sgd", small);
  ZeroOptions scatter;
  scatter.grad_reduction = GradReduction::reduce_scatter;
  check_stage_against_plain(2, "adamw", scatter);
}

TEST(Zero, Stage3EqualsDataParallelSgdAndAdamW) {
  check_stage_against_plain(3, "sgd");
  check_stage_against_plain(3, "adamw");
  ZeroOptions small;
  small.bucket_bytes = 64;
  check_stage_against_plain(3, "adamw", small);
  ZeroOptions scatter;
  scatter.grad_reduction = GradReduction::reduce_scatter;
  check_stage_against_plain(3, "sgd", scatter);
}

TEST(Zero, MemoryPerRankIsShardSized) {
  const int w = world_size(), r = world_rank();
  TrainRun run;
  run.optimizer = "adamw";
  run.steps = 2;
  run.zero.bucket_bytes = 64;
  std::vector<Result> results;
  for (int stage = 0; stage <= 3; ++stage) {
    run.stage = stage;
    results.push_back(train(run));
  }
  run.zero.prefetch = false;  // results[4]: stage 3, one layer gathered at a time
  results.push_back(train(run));
  Net layout_net;
  const int64_t n = layout_net.g.num_parameters();
  const ShardLayout l = ShardLayout::make(n, w);
  const int64_t f = sizeof(float), s = l.shard_size, mine = l.count(r);
  // AdamW: two state buffers.
  EXPECT_EQ(results[0].memory.optimizer, 2 * n * f);
  for (int stage = 1; stage <= 3; ++stage) {
    SCOPED_TRACE(fmt::format("stage {}", stage));
    EXPECT_EQ(results[stage].memory.optimizer, 2 * mine * f);
    // 1/W of plain, up to the padding of one element per buffer.
    EXPECT_LE(results[stage].memory.optimizer, 2 * s * f);
    EXPECT_LE(results[stage].memory.optimizer * w, results[0].memory.optimizer + 2 * w * f);
  }
  // Parameters: whole (padded for the all-gather) up to stage 2, a shard at stage 3.
  EXPECT_EQ(results[0].memory.parameters, n * f);
  EXPECT_EQ(results[1].memory.parameters, l.padded() * f);
  EXPECT_EQ(results[2].memory.parameters, l.padded() * f);
  EXPECT_EQ(results[3].memory.parameters, s * f);
  // Gradients: whole up to stage 1, a shard from stage 2.
  EXPECT_EQ(results[0].memory.gradients, n * f);
  EXPECT_EQ(results[1].memory.gradients, n * f);
  EXPECT_EQ(results[2].memory.gradients, s * f);
  EXPECT_EQ(results[3].memory.gradients, s * f);
  // Transient gradient buckets existed, never more than all gradients at once.
  for (int stage = 2; stage <= 3; ++stage) {
    EXPECT_GT(results[stage].memory.peak_gradient_staging, 0);
    EXPECT_LE(results[stage].memory.peak_gradient_staging, n * f);
  }
  // ZeRO-3 without prefetch: one layer's parameters gathered at a time, and
  // between two layers (the probe sits between bn and fc1, forward and
  // backward) only the shard.
  const Result& one = results[4];
  EXPECT_EQ(one.memory.parameters, s * f);
  EXPECT_EQ(one.memory.largest_layer, one.largest_layer_bytes);
  EXPECT_EQ(one.memory.largest_gathered, one.largest_layer_bytes);
  EXPECT_EQ(one.memory.peak_gathered_parameters, one.largest_layer_bytes);
  EXPECT_EQ(one.most_params_between_layers, s * f);
  // With prefetch: the running layer and the next, never more; between bn and
  // fc1 the shard plus fc1 (forward) or bn (backward) in flight, fc1 the larger.
  const Result& two = results[3];
  EXPECT_EQ(two.memory.largest_layer, two.largest_layer_bytes);
  EXPECT_EQ(two.memory.largest_gathered, two.largest_adjacent_layers_bytes);
  EXPECT_EQ(two.memory.peak_gathered_parameters, two.largest_adjacent_layers_bytes);
  EXPECT_GT(two.largest_adjacent_layers_bytes, two.largest_layer_bytes);
  EXPECT_EQ(two.most_params_between_layers, s * f + two.fc1_bytes);
}

// Stages 2/3 (bucketed) reduce each bucket's part to its owner: the gradient
// payload equals DataParallel's all-reduce payload, but as reduces, which put
// about half the bytes of an all-reduce on the wire ((W-1) * P in all against
// 2 (W-1) * P for a ring all-reduce of P bytes).
TEST(Zero, BucketedStagesReduceGradientsInsteadOfAllReducing) {
  const int w = world_size();
  TrainRun run;
  run.steps = 3;
  run.zero.sync_batch_norm = false;  // no statistics all-reduces: only gradients count
  run.zero.bucket_bytes = 64;        // buckets that straddle shard boundaries
  Net layout_net;
  const int64_t n = layout_net.g.num_parameters();
  run.stage = 0;
  const Result plain = train(run);
  EXPECT_EQ(plain.all_reduce.bytes, run.steps * n * 4);
  EXPECT_EQ(plain.reduce.calls, 0);
  for (int stage = 2; stage <= 3; ++stage) {
    SCOPED_TRACE(fmt::format("stage {}", stage));
    run.stage = stage;
    const Result zero = train(run);
    EXPECT_EQ(zero.all_reduce.calls, 0) << "no gradient is all-reduced";
    EXPECT_EQ(zero.reduce.bytes, plain.all_reduce.bytes);
    // At least one reduce per bucket, more where a bucket meets several shards.
    EXPECT_GE(zero.reduce.calls, plain.all_reduce.calls);
    if (w > 1) {
      EXPECT_GT(zero.reduce.calls, plain.all_reduce.calls);
    }
    if (world_rank() == 0)
      std::printf(
          "[ ZeRO-%d on %d rank(s) ] per step: all-reduce payload %lld B in %lld calls "
          "(stage 0) -> reduce payload %lld B in %lld calls\n",
          stage, w, static_cast<long long>(plain.all_reduce.bytes / run.steps),
          static_cast<long long>(plain.all_reduce.calls / run.steps),
          static_cast<long long>(zero.reduce.bytes / run.steps),
          static_cast<long long>(zero.reduce.calls / run.steps));
  }
}

// Stage 3's prefetch changes when gathers run, never what they carry: with
// and without it (next layer only, or a window of every layer) the parameters
// are bitwise the same, also when the predicted next layer does not run (a
// forward up to fc1 only) and with a frozen first layer that backward skips.
TEST(Zero, Stage3PrefetchIsBitwiseIdenticalToNoPrefetch) {
  Net layout_net;
  const int64_t all_bytes = layout_net.g.num_parameters() * static_cast<int64_t>(sizeof(float));
  for (const char* kind : {"sgd", "adamw"}) {
    for (int variant = 0; variant < 3; ++variant) {
      // The window: the next layer only, or every layer (prefetch_bytes past the model).
      for (const size_t window : {size_t{0}, size_t{1} << 20}) {
        SCOPED_TRACE(fmt::format("{}, variant {}, prefetch_bytes {}", kind, variant, window));
        TrainRun run;
        run.stage = 3;
        run.optimizer = kind;
        run.steps = 4;
        run.zero.bucket_bytes = 64;
        run.zero.prefetch_bytes = window;
        if (variant == 1) run.partial_forward = true;
        if (variant == 2) run.frozen = "conv";
        if (variant == 2 && 8 / world_size() >= 2) run.micro = 2;
        run.zero.prefetch = true;
        const Result on = train(run);
        run.zero.prefetch = false;
        const Result off = train(run);
        EXPECT_TRUE(on.identical_every_step);
        EXPECT_EQ(fingerprint(on.params), fingerprint(off.params));
        EXPECT_EQ(max_relative_difference(on.params, off.params), 0.0);
        // Between steps nothing is gathered, prefetched or not.
        EXPECT_EQ(on.memory.parameters, off.memory.parameters);
        // The same broadcasts, issued earlier, plus wasted ones when mispredicted
        // (variant 1 does mispredict: the comparison above covers that path). The
        // frozen first layer of variant 2 is skipped by backward, and backward's
        // prediction knows it: no broadcast is wasted on it.
        EXPECT_LE(on.memory.peak_gathered_parameters, on.memory.largest_gathered);
        if (variant != 1) {
          EXPECT_EQ(on.broadcast.calls, off.broadcast.calls);
        } else {
          EXPECT_GT(on.broadcast.calls, off.broadcast.calls);
        }
        if (variant == 0) {
          // The planned bound is what was held; a window past the model holds all
          // of it when the first layer runs.
          EXPECT_EQ(on.memory.peak_gathered_parameters, on.memory.largest_gathered);
          if (window > 0) {
            EXPECT_EQ(on.memory.largest_gathered, all_bytes);
          }
        }
        if (world_rank() == 0) expect_same_state(on.state, off.state, 1e-300);
      }
    }
  }
}

TEST(Zero, FrozenParametersAreNeverUpdated) {
  Net reference;
  const core::nn::Parameter& w = reference.g.parameter("fc1.weight");
  const core::nn::Parameter& b = reference.g.parameter("bn.bias");
  const uint64_t w_before = fingerprint(w.value), b_before = fingerprint(b.value);
  for (int stage = 1; stage <= 3; ++stage) {
    for (const char* kind : {"sgd", "adamw"}) {
      SCOPED_TRACE(fmt::format("stage {} {}", stage, kind));
      TrainRun run;
      run.stage = stage;
      run.optimizer = kind;
      run.steps = 4;
      run.frozen = "fc1";
      const Result frozen_fc1 = train(run);
      EXPECT_EQ(fingerprint(frozen_fc1.params.flat(w.offset, w.shape.numel())), w_before);
      // A layer with one frozen and one trainable parameter (BatchNorm writes the
      // frozen one's gradient into scratch).
      run.frozen = "bn.bias";
      const Result frozen_bias = train(run);
      EXPECT_EQ(fingerprint(frozen_bias.params.flat(b.offset, b.shape.numel())), b_before);
      TrainRun plain = run;
      plain.stage = -1;
      EXPECT_LT(max_relative_difference(frozen_bias.params, train(plain).params), kTolerance);
    }
  }
}

TEST(Zero, AccumulationAndClippingMatchDataParallel) {
  if (8 / world_size() < 2) GTEST_SKIP() << "needs at least 2 samples per rank";
  TrainRun plain;
  plain.steps = 4;
  plain.micro = 2;
  plain.clip = 0.5;
  const Result reference = train(plain);
  for (int stage = 1; stage <= 3; ++stage) {
    SCOPED_TRACE(fmt::format("stage {}", stage));
    TrainRun run = plain;
    run.stage = stage;
    const Result zero = train(run);
    EXPECT_LT(max_relative_difference(zero.params, reference.params), kTolerance);
    ASSERT_EQ(zero.norms.size(), reference.norms.size());
    for (size_t i = 0; i < zero.norms.size(); ++i)
      EXPECT_NEAR(zero.norms[i], reference.norms[i], 1e-5 * reference.norms[i]);
  }
}

TEST(Zero, OptimizerStateLoadsBackAtAnyStage) {
  TrainRun run;
  run.optimizer = "adamw";
  run.stage = 3;
  run.steps = 3;
  const Result trained = train(run);
  // Every rank needs the whole state to load it: rank 0 broadcasts its gathered copy.
  std::map<std::string, Tensor> whole;
  Net shapes;
  for (const char* buffer : {"exp_avg", "exp_avg_sq"})
    for (const core::nn::Parameter& p : shapes.g.parameters()) {
      const std::string key = fmt::format("{}/{}", buffer, p.name);
      Tensor t =
          world_rank() == 0 ? trained.state.at(key).clone() : Tensor::zeros(p.shape, DType::f32);
      MPI_Bcast(t.raw(), static_cast<int>(t.numel()), MPI_FLOAT, 0, MPI_COMM_WORLD);
      whole.emplace(key, t);
    }
  for (int stage = 1; stage <= 3; ++stage) {
    Net net;
    auto comm = mpitest::make_comm();
    ZeroOptions o;
    o.stage = stage;
    ZeroDataParallel zero(net.g, *comm, o, optimizer_config("adamw"));
    Context ctx;
    zero.load_optimizer_state(ctx, whole);
    // The sharded state() holds exactly this rank's part of each parameter.
    for (const auto& [name, t] : zero.optimizer().state()) {
      const core::nn::Parameter& p = net.g.parameter(name.substr(name.find('/') + 1));
      const auto [first, last] = zero.optimizer().owned_range(p);
      EXPECT_EQ(t.numel(), last - first) << name;
      const std::vector<double> part = t.to_vector(), all = whole.at(name).to_vector();
      for (int64_t i = first; i < last; ++i)
        ASSERT_EQ(part[i - first], all[i]) << name;
    }
    const std::map<std::string, Tensor> again = zero.gather_optimizer_state(ctx);
    if (world_rank() == 0) expect_same_state(again, whole, 1e-30);
  }
}

// fp16 overflow seen on one rank's gradient shard only: every rank must skip,
// and every rank's flag then says so.
TEST(Zero, AnOverflowOnOneShardSkipsTheStepOnEveryRank) {
  if (world_size() < 2) GTEST_SKIP() << "needs two ranks";
  for (int stage = 2; stage <= 3; ++stage) {
    Net net;
    auto comm = mpitest::make_comm();
    ZeroOptions o;
    o.stage = stage;
    ZeroDataParallel zero(net.g, *comm, o, optimizer_config("sgd"));
    Context ctx;
    Tensor images, labels;
    mpitest::global_batch(0, 900, 5, images, labels);
    mpitest::forward_backward(net.g, net.loss, ctx, images, labels, world_rank(), world_size(), 1,
                              [&](int k) { zero.prepare_backward(ctx, k > 0, true); });
    zero.finish_backward(ctx);
    const std::vector<double> before = zero.gather_parameters(ctx).to_vector();
    const Tensor skip = Tensor::from_vector({world_rank() == 1 ? 1.0 : 0.0}, Shape{1});
    zero.step(ctx, 0.1, skip);
    EXPECT_EQ(zero.gather_parameters(ctx).to_vector(), before) << "stage " << stage;
    EXPECT_EQ(skip.item(), 1.0) << "the flag becomes the sum over ranks, so a LossScaler owning "
                                   "it backs off on every rank";
  }
}

TEST(Zero, MemoryTableOfAPlan) {
  const auto build = [](core::nn::Graph& g) {
    const core::nn::NodeId x = g.input("x");
    g.add("fc", std::make_unique<core::nn::Linear>(10, 10), {x});  // 110 parameters
  };
  const int world = 8, rank = 7;  // planned without 8 ranks
  const std::vector<ZeroMemory> rows =
      zero_memory_table(build, world, rank, optimizer_config("sgd"));
  ASSERT_EQ(rows.size(), 4u);
  const ShardLayout l = ShardLayout::make(110, world);  // S = 14; rank 7 owns 12
  EXPECT_EQ(rows[0].persistent(), 110 * 4 * 3);
  EXPECT_EQ(rows[1].optimizer, l.count(rank) * 4);
  EXPECT_EQ(rows[2].gradients, l.shard_size * 4);
  EXPECT_EQ(rows[3].parameters + rows[3].gradients + rows[3].optimizer,
            (2 * l.shard_size + l.count(rank)) * 4);
  EXPECT_EQ(rows[2].largest_bucket, 110 * 4);  // one bucket: 110 floats < 25 MiB
  EXPECT_EQ(rows[3].largest_layer, 110 * 4);
  EXPECT_EQ(rows[3].largest_gathered, 110 * 4);  // one layer: nothing to prefetch
  std::FILE* out = std::tmpfile();
  print_zero_memory_table(rows, "fc", "SGD", out);
  EXPECT_GT(std::ftell(out), 200);
  std::fclose(out);
}

}  // namespace
}  // namespace cohort::comm
