// A whole torchvision network: ResNet-18 weights exported from PyTorch to
// safetensors, imported into cohort's ResNet-18 by name, must give PyTorch's
// eval logits, and one training forward/backward must give PyTorch's loss,
// every parameter gradient and the updated running statistics.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "core/nn/layers.hpp"
#include "models/resnet.hpp"
#include "models/weights_import.hpp"
#include "tests/support/golden.hpp"

namespace cohort::testing {
namespace {

std::string golden_dir() {
  return std::filesystem::path(golden_path()).parent_path().string();
}

struct ImportedResNet {
  core::nn::Graph g;
  core::nn::NodeId logits, loss;
  ImportedResNet() {
    const core::nn::NodeId image = g.input("image");
    const core::nn::NodeId label = g.input("label");
    models::ResNetOptions o;
    o.depth = 18;
    o.num_classes = 10;
    logits = models::add_resnet(g, image, o).logits;
    loss = g.add("loss", std::make_unique<core::nn::CrossEntropyLoss>(), {logits, label});
    g.build(core::Device::cpu(), 0);
    const models::ImportReport r =
        models::import_torchvision_weights(golden_dir() + "/resnet18.safetensors", g);
    EXPECT_EQ(r.loaded, static_cast<int>(g.parameters().size() + g.buffers().size()));
  }
};

TEST(ParityResNet18, ImportedTorchvisionWeightsGiveTorchsEvalLogits) {
  const GoldenFile file(golden_dir() + "/resnet18_golden.h5");
  ImportedResNet net;
  core::Context ctx;
  net.g.forward(ctx, {{"image", file.read("inputs", "x", DType::f32)}}, {.training = false},
                {net.logits});
  expect_matches("eval logits", net.g.output(net.logits), file.read("eval", "logits", DType::f64),
                 DType::f32, tol::f32);
}

TEST(ParityResNet18, TrainingStepMatchesTorchLossGradientsAndRunningStats) {
  const GoldenFile file(golden_dir() + "/resnet18_golden.h5");
  ImportedResNet net;
  core::Context ctx;
  net.g.forward(ctx,
                {{"image", file.read("inputs", "x", DType::f32)},
                 {"label", file.read("inputs", "labels", DType::i32)}},
                {.training = true});
  net.g.backward(ctx, {{net.loss, Tensor()}});
  expect_matches("train loss", net.g.output(net.loss), file.read("train", "loss", DType::f64),
                 DType::f32, tol::f32);
  int checked = 0;
  for (const core::nn::Parameter& p : net.g.parameters()) {
    expect_matches("grad " + p.name, p.grad, file.read("grad", p.name, DType::f64), DType::f32,
                   Tolerance{1e-3, 1e-4});
    ++checked;
  }
  EXPECT_EQ(checked, 62);
  for (const core::nn::Buffer& b : net.g.buffers())
    expect_matches(b.name, b.value, file.read("buffer", b.name, DType::f64), DType::f32, tol::f32);
}

TEST(ParityResNet18, ImportRefusesAnotherArchitectureListingEveryProblem) {
  core::nn::Graph g;
  models::ResNetOptions o;
  o.depth = 34;
  o.num_classes = 7;
  models::add_resnet(g, g.input("image"), o);
  g.build(core::Device::cpu(), 0);
  const std::vector<double> before = g.flat_params().to_vector();
  try {
    models::import_torchvision_weights(golden_dir() + "/resnet18.safetensors", g);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("shape: 'fc.weight'"), std::string::npos) << m;
    EXPECT_NE(m.find("missing: graph entry 'layer3.5.conv1.weight'"), std::string::npos) << m;
  }
  EXPECT_EQ(g.flat_params().to_vector(), before);
}

}  // namespace
}  // namespace cohort::testing
