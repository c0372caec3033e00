#pragma once
// Helpers shared by the mpi suite's test files.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "comm/mpi_session.hpp"
#include "core/nn/graph.hpp"
#include "core/optim/optimizer.hpp"

namespace cohort::mpitest {

comm::MpiSession& session();
// A deadline long enough for a loaded CI machine, no check mode, no faults.
comm::CommOptions default_options();
// An MPI communicator over MPI_COMM_WORLD.
std::unique_ptr<comm::Communicator> make_comm(comm::CommOptions options = default_options());

// Values as a host tensor of `dtype`, and back.
core::Tensor host_tensor(const std::vector<double>& values, core::DType dtype);

// This process's rank in MPI_COMM_WORLD, and its size.
int world_rank();
int world_size();

// ---- training runs of the data-parallel engines (DataParallel, ZeRO) ----------------

// FNV-1a over the tensor's bytes: equal fingerprints mean bitwise equal tensors
// (up to a 64-bit collision).
uint64_t fingerprint(const core::Tensor& t);
// Collective over MPI_COMM_WORLD: every rank's fingerprint of its `t`, by rank.
std::vector<uint64_t> fingerprints_of_all_ranks(const core::Tensor& t);

// max_i |a_i - b_i| / (|b_i| + 1e-3); a different size is a test failure.
double max_relative_difference(const core::Tensor& a, const core::Tensor& b);

// "sgd": momentum 0.9, weight decay 1e-4; "adamw": weight decay 1e-2.
core::optim::OptimizerConfig optimizer_config(const std::string& kind);

// The global batch of 8 of training step `step`: images [8, 6, 6, 2] uniform in
// [-1, 1) (seed seed_base + step) and labels (i * label_stride + step) mod 3.
void global_batch(int step, uint64_t seed_base, int label_stride, core::Tensor& images,
                  core::Tensor& labels);

// Adds conv (2 -> 4 channels, 3x3, pad 1) -> BatchNorm2d -> [`probe`, when given]
// -> 2x2 adaptive average pool -> flatten -> fc1 (16 -> 8) on NHWC images
// [*, 6, 6, 2]; returns fc1. Nodes: conv, bn, probe, pool, flat, fc1.
core::nn::NodeId add_conv_features(core::nn::Graph& g, core::nn::NodeId image, bool conv_bias,
                                   std::unique_ptr<core::nn::Layer> probe = nullptr);
// Adds ReLU -> fc2 (8 -> 3) -> cross-entropy against `label`; returns the loss.
// Nodes: relu, fc2, loss.
core::nn::NodeId add_classifier(core::nn::Graph& g, core::nn::NodeId features,
                                core::nn::NodeId label);

// One step's forward and backward of rank `rank` of `world` on its share of the
// global batch (inputs "image", "label"), in `micro` micro-batches whose loss
// seeds are 1 / micro, accumulating from the second on. `before_backward(k)`
// runs between micro-batch k's forward and backward (an engine's
// prepare_backward).
void forward_backward(core::nn::Graph& g, core::nn::NodeId loss, core::Context& ctx,
                      const core::Tensor& images, const core::Tensor& labels, int rank, int world,
                      int micro, const std::function<void(int k)>& before_backward);

}  // namespace cohort::mpitest
