#include "tests/mpi/mpi_test_helpers.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/nn/layers.hpp"
#include "tests/support/gradcheck.hpp"

namespace cohort::mpitest {

comm::MpiSession& session() {
  comm::MpiSession* s = comm::MpiSession::current();
  COHORT_CHECK(s != nullptr, "mpi suite: no MpiSession (tests/mpi/main.cpp makes one)");
  return *s;
}

comm::CommOptions default_options() {
  comm::CommOptions options;
  options.timeout_s = 120;  // a real hang ends the run with a message instead of ctest's kill
  return options;
}

std::unique_ptr<comm::Communicator> make_comm(comm::CommOptions options) {
  return comm::make_communicator(comm::Backend::mpi, MPI_COMM_WORLD, core::Device::cpu(), options);
}

core::Tensor host_tensor(const std::vector<double>& values, core::DType dtype) {
  return core::Tensor::from_vector(values, core::Shape{static_cast<int64_t>(values.size())}, dtype);
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

uint64_t fingerprint(const core::Tensor& t) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::vector<uint64_t> fingerprints_of_all_ranks(const core::Tensor& t) {
  const uint64_t mine = fingerprint(t);
  std::vector<uint64_t> all(static_cast<size_t>(world_size()));
  MPI_Allgather(&mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
  return all;
}

double max_relative_difference(const core::Tensor& a, const core::Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  EXPECT_EQ(x.size(), y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i)
    worst = std::max(worst, std::abs(x[i] - y[i]) / (std::abs(y[i]) + 1e-3));
  return worst;
}

core::optim::OptimizerConfig optimizer_config(const std::string& kind) {
  core::optim::OptimizerConfig c;
  c.kind = kind;
  c.weight_decay = kind == "sgd" ? 1e-4 : 1e-2;
  c.momentum = 0.9;
  return c;
}

void global_batch(int step, uint64_t seed_base, int label_stride, core::Tensor& images,
                  core::Tensor& labels) {
  images =
      testing::random_tensor(core::Shape{8, 6, 6, 2}, seed_base + step, -1, 1, core::DType::f32);
  std::vector<double> l;
  for (int i = 0; i < 8; ++i)
    l.push_back((i * label_stride + step) % 3);
  labels = core::Tensor::from_vector(l, core::Shape{8}, core::DType::i32);
}

core::nn::NodeId add_conv_features(core::nn::Graph& g, core::nn::NodeId image, bool conv_bias,
                                   std::unique_ptr<core::nn::Layer> probe) {
  using namespace core::nn;
  Conv2dOptions c;
  c.in_channels = 2;
  c.out_channels = 4;
  c.bias = conv_bias;
  c.geometry.pad_h = c.geometry.pad_w = 1;
  NodeId h = g.add("conv", std::make_unique<Conv2d>(c), {image});
  h = g.add("bn", std::make_unique<BatchNorm2d>(BatchNormOptions{4, 0.1, 1e-5, true}), {h});
  if (probe) h = g.add("probe", std::move(probe), {h});
  h = g.add("pool", std::make_unique<AdaptiveAvgPool2d>(2, 2), {h});
  h = g.add("flat", std::make_unique<Flatten>(), {h});
  return g.add("fc1", std::make_unique<Linear>(16, 8), {h});
}

core::nn::NodeId add_classifier(core::nn::Graph& g, core::nn::NodeId features,
                                core::nn::NodeId label) {
  using namespace core::nn;
  NodeId h = g.add("relu", std::make_unique<ReLU>(), {features});
  h = g.add("fc2", std::make_unique<Linear>(8, 3), {h});
  return g.add("loss", std::make_unique<CrossEntropyLoss>(), {h, label});
}

void forward_backward(core::nn::Graph& g, core::nn::NodeId loss, core::Context& ctx,
                      const core::Tensor& images, const core::Tensor& labels, int rank, int world,
                      int micro, const std::function<void(int k)>& before_backward) {
  const int64_t per_rank = 8 / world, per_micro = per_rank / micro;
  for (int k = 0; k < micro; ++k) {
    const int64_t begin = rank * per_rank + k * per_micro;
    g.forward(ctx,
              {{"image", images.slice(begin, begin + per_micro).clone()},
               {"label", labels.slice(begin, begin + per_micro).clone()}},
              {.training = true});
    before_backward(k);
    const core::Tensor seed = core::Tensor::from_vector({1.0 / micro}, core::Shape{1});
    g.backward(ctx, {{loss, seed}}, /*accumulate=*/k > 0);
  }
}

}  // namespace cohort::mpitest
