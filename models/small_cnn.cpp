#include "models/small_cnn.hpp"

#include <memory>

#include "core/nn/layers.hpp"

namespace cohort::models {

using namespace core::nn;

SmallCnnNodes add_small_cnn(Graph& g, int num_classes, double dropout,
                            const core::Tensor& class_weights) {
  SmallCnnNodes n;
  n.image = g.input("image");
  n.label = g.input("label");
  auto conv = [](int64_t in, int64_t out) {
    Conv2dOptions o;
    o.in_channels = in;
    o.out_channels = out;
    o.geometry.pad_h = o.geometry.pad_w = 1;
    return std::make_unique<Conv2d>(o);
  };
  auto bn = [](int64_t c) {
    return std::make_unique<BatchNorm2d>(BatchNormOptions{c, 0.1, 1e-5, true});
  };
  const core::ops::PoolGeometry pool{2, 2, 2, 2, 0, 0, true};
  NodeId x = g.add("conv1", conv(1, 32), {n.image});
  x = g.add("bn1", bn(32), {x});
  x = g.add("pool1", std::make_unique<MaxPool2d>(pool), {x});
  x = g.add("conv2", conv(32, 64), {x});
  x = g.add("bn2", bn(64), {x});
  x = g.add("pool2", std::make_unique<MaxPool2d>(pool), {x});
  x = g.add("flatten", std::make_unique<Flatten>(), {x});
  x = g.add("fc1", std::make_unique<Linear>(7 * 7 * 64, 128), {x});
  x = g.add("relu", std::make_unique<ReLU>(), {x});
  x = g.add("dropout", std::make_unique<Dropout>(dropout), {x});
  n.logits = g.add("fc2", std::make_unique<Linear>(128, num_classes), {x});
  // Classification: every class id counts (no ignore label).
  n.loss = g.add("loss", std::make_unique<CrossEntropyLoss>(/*ignore_index=*/-1, class_weights),
                 {n.logits, n.label});
  return n;
}

}  // namespace cohort::models
