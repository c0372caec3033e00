#pragma once
// CUDA implementations of the ops in core/ops/ops.hpp, same signatures. The
// dispatchers in core/ops/*.cpp validate arguments and call these for CUDA
// tensors; they exist only in builds with COHORT_WITH_CUDA.
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cuda {

Tensor conv2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
              const ConvGeometry& g);  // bias may be undefined
Tensor conv2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape,
                             const ConvGeometry& g);
void conv2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate, const ConvGeometry& g);
void bias_backward(Context& ctx, const Tensor& dy, Tensor& db, bool accumulate);
Tensor conv_transpose2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
                        const ConvGeometry& g);
Tensor conv_transpose2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w,
                                       const Shape& x_shape, const ConvGeometry& g);
void conv_transpose2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                                      bool accumulate, const ConvGeometry& g);
Tensor linear(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias);
Tensor linear_backward_input(Context& ctx, const Tensor& dy, const Tensor& w);
void linear_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate);
Tensor batch_norm_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        Tensor& running_mean, Tensor& running_var, const BatchNormArgs& args,
                        BatchNormSaved& saved);
Tensor batch_norm_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       const Tensor& running_mean, const Tensor& running_var,
                       const BatchNormArgs& args, BatchNormSaved& saved);
BatchNormGrads batch_norm_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                                   const Tensor& gamma, const BatchNormSaved& saved,
                                   const BatchNormArgs& args, bool training, Tensor& dgamma,
                                   Tensor& dbeta, bool accumulate);
Tensor relu(Context& ctx, const Tensor& x);
Tensor relu_backward(Context& ctx, const Tensor& dy, const Tensor& y);
Tensor add(Context& ctx, const Tensor& a, const Tensor& b);  // same shapes
Tensor mul(Context& ctx, const Tensor& a, const Tensor& b);  // same shapes
Tensor scale(Context& ctx, const Tensor& x, double alpha);
void add_inplace(Context& ctx, Tensor& acc, const Tensor& x);
Tensor cast(Context& ctx, const Tensor& x, DType dtype);
void fill(Context& ctx, Tensor& t, double value);
Tensor max_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g);
Tensor max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                           const PoolGeometry& g);
Tensor avg_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g);
Tensor avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape,
                           const PoolGeometry& g);
Tensor adaptive_avg_pool2d(Context& ctx, const Tensor& x, int out_h, int out_w);
Tensor adaptive_avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape);
Tensor resize_bilinear(Context& ctx, const Tensor& x, int out_h, int out_w);
Tensor resize_bilinear_backward(Context& ctx, const Tensor& dy, const Shape& x_shape);
Tensor concat_channels(Context& ctx, const std::vector<Tensor>& xs);
std::vector<Tensor> split_channels(Context& ctx, const Tensor& dy,
                                   const std::vector<int64_t>& channels);
Tensor dropout(Context& ctx, const Tensor& x, double p, uint64_t offset);
Tensor dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t offset);
Tensor softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                             const Tensor& class_weights, int ignore_index);
Tensor softmax_cross_entropy_backward(Context& ctx, const Tensor& dloss, const Tensor& logits,
                                      const Tensor& labels, const Tensor& class_weights,
                                      int ignore_index);
Tensor regression_loss(Context& ctx, RegressionLoss kind, const Tensor& pred, const Tensor& target,
                       const Tensor& mask, double beta);
Tensor regression_loss_backward(Context& ctx, RegressionLoss kind, const Tensor& dloss,
                                const Tensor& pred, const Tensor& target, const Tensor& mask,
                                double beta);
Tensor cross_entropy_normaliser(Context& ctx, const Tensor& labels, const Tensor& class_weights,
                                int ignore_index);
Tensor valid_count(Context& ctx, const Tensor& mask, int64_t numel);
Tensor normaliser_share(Context& ctx, const Tensor& local, const Tensor& total, double factor);
Tensor uncertainty_weighted_sum(Context& ctx, const std::vector<Tensor>& losses,
                                const Tensor& log_vars);
std::vector<Tensor> uncertainty_weighted_sum_backward(Context& ctx, const Tensor& dtotal,
                                                      const std::vector<Tensor>& losses,
                                                      const Tensor& log_vars, Tensor& dlog_vars,
                                                      bool accumulate);
Tensor weighted_loss_sum(Context& ctx, const std::vector<Tensor>& losses, const Tensor& weights);
std::vector<Tensor> weighted_loss_sum_backward(Context& ctx, const Tensor& dtotal,
                                               const Tensor& weights);
void accumulate_loss_sums(Context& ctx, const std::vector<Tensor>& losses, Tensor& sums);
Tensor task_gram(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask, uint8_t bits);
Tensor pcgrad_coefficients(Context& ctx, const Tensor& gram, const Tensor& weights);
void combine_task_gradients(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask,
                            uint8_t bits, const Tensor& in_set, const Tensor& out_of_set,
                            Tensor& out);
void gradnorm_update(Context& ctx, Tensor& weights, Tensor& state, const Tensor& gram,
                     const Tensor& loss_sums, const Tensor& scale, const Tensor& skip,
                     const GradNormArgs& args);
Tensor sum(Context& ctx, const Tensor& x);  // 1-element f32 (f64 for f64 input)
Tensor mean(Context& ctx, const Tensor& x);
Tensor sum_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype);
Tensor mean_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype);
Tensor argmax_channels(Context& ctx, const Tensor& x);

void accumulate_confusion(Context& ctx, const Tensor& predicted, const Tensor& truth,
                          int64_t ignore_index, Tensor& confusion, Tensor& out_of_range);
void accumulate_depth_errors(Context& ctx, const Tensor& predicted, const Tensor& target,
                             const Tensor& valid, Tensor& sums);

}  // namespace cohort::core::ops::cuda
