// Data parallelism on CPU ranks with the MPI backend (run under mpirun -np 1, 2, 4):
// N ranks x B/N samples equal 1 rank x B samples (SyncBatchNorm included),
// parameters stay bitwise identical across ranks, accumulation equals the large
// batch, frozen parameters are never sent, bf16 gradients stay close.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <vector>

#include "comm/communicator.hpp"
#include "comm/data_parallel.hpp"
#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"
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

using mpitest::fingerprint;
using mpitest::max_relative_difference;
using mpitest::world_rank;
using mpitest::world_size;

// conv-BN -> pool -> linear -> ReLU -> linear -> CE, or (no_bn) a two-layer MLP on
// flattened images.
struct Net {
  core::nn::Graph g;
  core::nn::NodeId loss;
  explicit Net(bool with_bn) {
    using namespace core::nn;
    const NodeId x = g.input("image");
    const NodeId y = g.input("label");
    NodeId h;
    if (with_bn) {
      h = mpitest::add_conv_features(g, x, /*conv_bias=*/false);
    } else {
      h = g.add("flat", std::make_unique<Flatten>(), {x});
      h = g.add("fc1", std::make_unique<Linear>(6 * 6 * 2, 8), {h});
    }
    loss = mpitest::add_classifier(g, h, y);
    g.build(Device::cpu(), 17);
  }
};

void expect_identical_across_ranks(const Tensor& params, int step) {
  const std::vector<uint64_t> all = mpitest::fingerprints_of_all_ranks(params);
  for (size_t r = 0; r < all.size(); ++r)
    EXPECT_EQ(all[r], all[0]) << "parameters of rank " << r << " differ from rank 0 after step "
                              << step;
}

struct Result {
  Tensor params;
  int64_t communicated = 0;
};

// Trains `steps` SGD steps; with dp, each rank takes its share of the batch,
// split further into `micro` micro-batches.
Result train(bool with_bn, bool dp, int steps, int micro, DataParallelOptions options = {},
             const char* frozen = nullptr) {
  Net net(with_bn);
  if (frozen) net.g.set_trainable(frozen, false);
  Context ctx;
  core::optim::Optimizer opt(net.g, mpitest::optimizer_config("sgd"));
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<DataParallel> engine;
  const int w = dp ? world_size() : 1, r = dp ? world_rank() : 0;
  if (dp) {
    comm = make_communicator(Backend::mpi, MPI_COMM_WORLD, Device::cpu());
    engine = std::make_unique<DataParallel>(net.g, *comm, options);
    engine->broadcast_state(ctx);
  }
  for (int s = 0; s < steps; ++s) {
    Tensor images, labels;
    mpitest::global_batch(s, /*seed_base=*/500, /*label_stride=*/7, images, labels);
    mpitest::forward_backward(net.g, net.loss, ctx, images, labels, r, w, micro, [&](int k) {
      if (engine) engine->prepare_backward(ctx, k == micro - 1);
    });
    if (engine) engine->finish_backward(ctx);
    opt.step(ctx, 0.1);
    if (dp) expect_identical_across_ranks(net.g.flat_params(), s);
  }
  return {net.g.flat_params().clone(), engine ? engine->communicated_elements() : 0};
}

TEST(DataParallel, NRanksEqualOneRankWithSyncBatchNorm) {
  const Result dp = train(/*with_bn=*/true, /*dp=*/true, 20, 1);
  const Result single = train(true, false, 20, 1);
  const double diff = max_relative_difference(dp.params, single.params);
  // Sums are associated differently (per-rank partial sums, then across ranks).
  EXPECT_LT(diff, 1e-4) << "world size " << world_size();
}

TEST(DataParallel, SmallBucketsGiveTheSameResult) {
  DataParallelOptions small;
  small.bucket_bytes = 64;  // one or two parameters per bucket
  const Result a = train(true, true, 5, 1, small);
  const Result b = train(true, true, 5, 1);
  EXPECT_LT(max_relative_difference(a.params, b.params), 1e-6);
}

TEST(DataParallel, GradientAccumulationEqualsTheLargeBatch) {
  if (8 / world_size() < 2) GTEST_SKIP() << "needs at least 2 samples per rank";
  const Result accumulated = train(/*with_bn=*/false, true, 10, 2);
  const Result single = train(false, false, 10, 1);
  EXPECT_LT(max_relative_difference(accumulated.params, single.params), 1e-4);
}

TEST(DataParallel, FrozenParametersStayBitwiseAndAreNeverSent) {
  Net reference(false);
  const Tensor fc1_before = reference.g.parameter("fc1.weight").value.clone();
  const int steps = 4;
  const Result r = train(false, true, steps, 1, {}, "fc1");
  Net layout(false);
  const core::nn::Parameter& w = layout.g.parameter("fc1.weight");
  EXPECT_EQ(fingerprint(r.params.flat(w.offset, w.shape.numel())), fingerprint(fc1_before));
  const int64_t trainable =
      layout.g.num_parameters() - w.shape.numel() - layout.g.parameter("fc1.bias").shape.numel();
  EXPECT_EQ(r.communicated, steps * trainable);
}

TEST(DataParallel, Bf16GradientsStayClose) {
  DataParallelOptions bf16;
  bf16.bf16_gradients = true;
  const Result a = train(true, true, 5, 1, bf16);
  const Result b = train(true, true, 5, 1);
  EXPECT_LT(max_relative_difference(a.params, b.params), 5e-2);
}

TEST(DataParallel, BucketsCoverTrainableParametersInReverseOrder) {
  Net net(true);
  auto comm = make_communicator(Backend::mpi, MPI_COMM_WORLD, Device::cpu());
  DataParallelOptions o;
  o.bucket_bytes = 200;
  DataParallel engine(net.g, *comm, o);
  int64_t covered = 0, previous_offset = net.g.num_parameters();
  for (const auto& b : engine.buckets()) {
    EXPECT_LE(b.offset + b.count, previous_offset) << "buckets must go backwards";
    previous_offset = b.offset;
    covered += b.count;
  }
  EXPECT_EQ(covered, net.g.num_parameters());
}

// Two heads on a shared trunk; backward from one loss only leaves the other head
// unreached. DDP-style engines hang or crash here; cohort reports the unreached
// parameters as final (zero gradients) and every bucket completes.
TEST(DataParallel, UnusedParametersNeitherHangNorCrash) {
  using namespace core::nn;
  Graph g;
  const NodeId x = g.input("x");
  const NodeId t = g.add("trunk", std::make_unique<Linear>(4, 6), {x});
  const NodeId a = g.add("head_a", std::make_unique<Linear>(6, 2), {t});
  const NodeId b = g.add("head_b", std::make_unique<Linear>(6, 2), {t});
  const NodeId la = g.add("loss_a", std::make_unique<MeanLoss>(), {a});
  g.add("loss_b", std::make_unique<MeanLoss>(), {b});
  g.build(Device::cpu(), 3);
  Context ctx;
  auto comm = make_communicator(Backend::mpi, MPI_COMM_WORLD, Device::cpu());
  DataParallel engine(g, *comm, {});
  engine.broadcast_state(ctx);
  g.forward(ctx, {{"x", testing::random_tensor(Shape{3, 4}, 9 + world_rank(), -1, 1, DType::f32)}},
            {.training = true});
  engine.prepare_backward(ctx, true);
  g.backward(ctx, {{la, Tensor()}});
  engine.finish_backward(ctx);
  for (double v : g.parameter("head_b.weight").grad.to_vector())
    EXPECT_EQ(v, 0.0);
  EXPECT_EQ(engine.communicated_elements(), g.num_parameters());
}

}  // namespace
}  // namespace cohort::comm
