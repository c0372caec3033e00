#pragma once
// A small CNN for 28x28 grey images (the Fashion-MNIST demo):
// conv3x3(32)-BN-ReLU-maxpool, conv3x3(64)-BN-ReLU-maxpool, fc(128)-ReLU-dropout, fc(classes).
#include "core/nn/graph.hpp"

namespace cohort::models {

struct SmallCnnNodes {
  core::nn::NodeId image = -1, label = -1, logits = -1, loss = -1;
};

// Graph inputs: "image" [N, 28, 28, 1] f32, "label" [N] (u8/i32/i64).
// class_weights: cross entropy's per-class weights (f32 [num_classes]; undefined: none).
SmallCnnNodes add_small_cnn(core::nn::Graph& graph, int num_classes = 10, double dropout = 0.25,
                            const core::Tensor& class_weights = {});

}  // namespace cohort::models
