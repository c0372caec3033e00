#pragma once
// TwoTaskNet's nodes as the trainer's step names them (tests that link launch).
#include "launch/model_setup.hpp"
#include "tests/support/two_task_net.hpp"

namespace cohort::testing {

inline launch::ModelNodes nodes_of(const TwoTaskNet& net) {
  launch::ModelNodes n;
  n.logits = net.logits;
  n.loss = net.loss;
  n.dense = true;
  n.depth = net.depth;
  n.seg_loss = net.seg_loss;
  n.depth_loss = net.depth_loss;
  return n;
}

}  // namespace cohort::testing
