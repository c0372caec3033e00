// Whole-batch means across ranks (launch/train_step, loss.normalize global): a
// dense two-task network (per-pixel cross entropy with ignored pixels, masked L1
// depth, balanced by learned uncertainty weights) trained by N ranks on B/N
// images each, in 1 or 2 micro-batches, at ZeRO stages 0, 2 and 3, ends where one
// process training on all B images ends, although the ranks' images hold very different numbers of
// counted pixels. Averaging each rank's own mean (per_rank, as PyTorch's DDP) does not.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "launch/engine.hpp"
#include "launch/train_step.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"
#include "tests/support/two_task_nodes.hpp"

namespace cohort::launch {
namespace {

using core::Tensor;

constexpr int64_t kBatch = 8;

// Rows [begin, begin + rows) of every input, in `micro` micro-batches.
std::vector<StepInputs> parts_of(const StepInputs& batch, int64_t begin, int64_t rows, int micro) {
  std::vector<StepInputs> parts(static_cast<size_t>(micro));
  const int64_t m = rows / micro;
  for (int k = 0; k < micro; ++k)
    for (const auto& [name, t] : batch)
      parts[static_cast<size_t>(k)][name] = t.slice(begin + k * m, begin + (k + 1) * m);
  return parts;
}

// Three SGD steps; with ranks each takes its rows of the global batch.
Tensor train(bool ranks, int micro, bool whole_batch_mean, int zero_stage = 0) {
  testing::TwoTaskNet net;
  ModelNodes nodes = testing::nodes_of(net);
  TrainConfig config;
  config.momentum = 0.9;
  config.weight_decay = 1e-4;
  config.zero_stage = zero_stage;
  std::unique_ptr<comm::Communicator> comm = ranks ? mpitest::make_comm() : nullptr;
  core::Context ctx(core::Device::cpu());
  TrainingEngine engine(net.graph, config, comm.get());
  core::optim::LossScaler scaler(core::optim::LossScalerConfig{}, core::Device::cpu());
  const int world = ranks ? mpitest::world_size() : 1, rank = ranks ? mpitest::world_rank() : 0;
  const int64_t rows = kBatch / world;
  for (int step = 0; step < 3; ++step)
    run_train_step(ctx, net.graph, nodes, engine, scaler,
                   parts_of(testing::two_task_batch(step, kBatch), rank * rows, rows, micro),
                   {.lr = 0.2, .whole_batch_mean = whole_batch_mean});
  // ZeRO-3 keeps only its shard of the parameters: gathered to compare.
  return engine.full_parameters(ctx).clone();
}

TEST(WholeBatchMean, NRanksEqualOneProcessWithUnevenValidPixels) {
  const Tensor alone = train(false, 1, true);
  const int64_t rows = kBatch / mpitest::world_size();
  for (int stage : {0, 2, 3})
    for (int micro : {1, 2}) {
      if (rows % micro != 0 || rows < micro) continue;
      const Tensor ranks = train(true, micro, true, stage);
      EXPECT_LT(mpitest::max_relative_difference(ranks, alone), 1e-5)
          << mpitest::world_size() << " ranks x " << micro << " micro-batches, ZeRO-" << stage;
    }
  // The comparison can fail: each part's own mean weighs the pixels differently.
  if (mpitest::world_size() > 1) {
    EXPECT_GT(mpitest::max_relative_difference(train(true, 1, false), alone), 1e-3)
        << "per-rank means equal the whole batch's although the ranks count different pixels";
  }
}

}  // namespace
}  // namespace cohort::launch
