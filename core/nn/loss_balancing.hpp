#pragma once
// Multi-task loss balancing: how the task losses of a multi-task model become the
// one loss that backward starts from (TrainConfig's loss.balancing).
//
//   uncertainty  learned weights (UncertaintyWeighting in layers.hpp, Kendall et al.)
//   fixed        total = sum_k w_k L_k with constant weights
//   dwa          Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019): the
//                same weighted sum, with weights set once per epoch from how fast
//                each task's epoch-mean loss fell over the two epochs before
//   pcgrad       PCGrad (Yu et al., NeurIPS 2020): fixed weights, and the
//                shared parameters' task gradients projected apart where they
//                conflict (launch/task_gradients: one backward per task)
//   gradnorm     GradNorm (Chen et al., ICML 2018): weights learned each step so
//                that the tasks' gradient norms on the last shared layer train
//                at similar rates (launch/task_gradients)
//
// Weights that are not trained live on the device and the weighted sum reads them
// there, so a step never waits for the host. DWA's whole state is kept as graph
// buffers of the loss node (saved and loaded with checkpoints by name and
// broadcast by the data-parallel engines like BatchNorm's running statistics), so
// a stopped and resumed run continues with exactly the weights and sums it had:
//   "<node>.weights"    [K]         this epoch's weights (ones at the start)
//   "<node>.dwa_stats"  [3, K + 1]  row 0: this epoch's running sums of the K task
//                                   losses, then the count they are over; row 1: the
//                                   last finished epoch's mean losses, then its count;
//                                   row 2: the same for the epoch before (count 0: none)
// GradNorm's likewise:
//   "<node>.weights"   [K]     the weights (ones at the start; they sum to K)
//   "<node>.gradnorm"  [4, K]  rows: each task's first loss L(0) (0: none yet),
//                              Adam's m and v of the weights, [3][0] the update count
#include <memory>
#include <string>
#include <vector>

#include "core/nn/graph.hpp"
#include "core/nn/layer.hpp"

namespace cohort::core::nn {

enum class LossBalancingMethod { uncertainty, fixed, dwa, pcgrad, gradnorm };

struct LossBalancing {
  LossBalancingMethod method = LossBalancingMethod::uncertainty;
  std::vector<double> weights;  // fixed, pcgrad: one per loss, >= 0; empty: all 1
  double temperature = 2.0;     // dwa: T (large T: weights near 1)
};

// DWA's weights for the next epoch from the mean task losses of the last two
// finished epochs: lambda_k = K exp(r_k / T) / sum_i exp(r_i / T) with
// r_k = last_k / before_k, so a task whose loss fell more slowly gets more weight
// and the weights sum to K. A ratio that cannot be formed (before_k not positive
// and finite, or a non-finite quotient) counts as 1.
std::vector<double> dwa_weights(const std::vector<double>& last, const std::vector<double>& before,
                                double temperature);

// total = sum_k w_k L_k over its K inputs (task losses), with weights that are not
// trained: constants (fixed), or DWA's buffers (see the top of this file).
// Backward gives dL_k = w_k * dtotal.
class WeightedLossSum : public Layer {
 public:
  // Constant weights, one per loss (finite, >= 0): the layer has no state.
  explicit WeightedLossSum(std::vector<double> weights);
  // Dynamic Weight Average over `num_losses` losses with temperature T > 0.
  static std::unique_ptr<WeightedLossSum> dwa(int num_losses, double temperature);
  // GradNorm's weights over `num_losses` losses, set by launch/task_gradients.
  static std::unique_ptr<WeightedLossSum> gradnorm(int num_losses);

  std::string kind() const override { return "WeightedLossSum"; }
  int num_inputs() const override { return m_n; }
  bool is_loss() const override { return true; }
  std::vector<BufferSpec> buffer_specs() const override;
  // In training (DWA) it also adds the task losses and a count of 1 to row 0 of
  // dwa_stats, after summing them over the ranks when a reducer is set.
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

  bool is_dwa() const { return m_dwa; }
  bool is_gradnorm() const { return m_gradnorm; }
  // The weights the sum uses now, f32 [K] on ctx's device.
  const Tensor& weights(Context& ctx) { return weights_on(ctx); }
  // GradNorm: the "<node>.gradnorm" buffer (see the top of this file).
  Tensor& gradnorm_state();
  double temperature() const { return m_temperature; }
  // Data parallelism (DWA): each step's losses are summed over the ranks before
  // they are added (one small all-reduce per step), so every rank holds the same
  // sums, which is what a checkpoint (rank 0's buffers) stores and what a run
  // resumed at any world size needs. nullptr: this process's losses only.
  void set_reducer(ops::StatsReducer* reducer) { m_reducer = reducer; }

  // DWA, at the end of an epoch (not inside a step: it reads the sums on the host,
  // synchronising ctx once): row 0's means become row 1, row 1 moves to row 2,
  // row 0 restarts at zero, and the weights become dwa_weights(row 1, row 2) once
  // two epochs are finished (1 before: lambda = 1 for the first two epochs).
  // Returns the new weights.
  std::vector<double> finish_epoch(Context& ctx);

 private:
  WeightedLossSum(int num_losses, double temperature);  // DWA
  // The weights the sum uses now, on ctx's device.
  const Tensor& weights_on(Context& ctx);

  int m_n = 0;
  bool m_dwa = false;
  bool m_gradnorm = false;
  double m_temperature = 2.0;
  Tensor m_host_weights;    // fixed: f32 [K] on the CPU
  Tensor m_device_weights;  // fixed: the same on the device the layer runs on
  ops::StatsReducer* m_reducer = nullptr;
};

// Adds the node `name` that combines `losses` per `balancing` into the loss to
// train on: UncertaintyWeighting (parameter "<name>.log_vars") or WeightedLossSum
// (pcgrad: with its fixed weights; the projection is the step's business).
// Throws when the number of fixed weights does not match the losses.
NodeId add_balanced_loss(Graph& graph, const std::string& name, std::vector<NodeId> losses,
                         const LossBalancing& balancing);

}  // namespace cohort::core::nn
