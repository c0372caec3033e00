#pragma once
// The op library: one declaration per op, dispatched on the tensors' device to a
// CPU implementation (core/ops/cpu/, float and double) or a CUDA implementation
// (core/ops/cuda/, f32/bf16/f16 storage with f32 accumulation).
//
// Conventions (see docs/ARCHITECTURE.md, "Ops"):
//  - Activations are NHWC: x[N, H, W, C]. "Channels" is always the last dim.
//  - conv2d weight is [O, kh, kw, I] (cuDNN's NHWC filter layout);
//    conv_transpose2d weight is [I, kh, kw, O] (PyTorch's [I, O, kh, kw], permuted);
//    linear weight is [out, in] (as PyTorch).
//  - Input gradients are returned; parameter gradients are written into
//    caller-owned tensors (views of the flat gradient buffer), overwriting them or,
//    with `accumulate`, adding to them (gradient accumulation, fan-in).
//  - Scalar results (losses, sums) are 1-element tensors on the op's device (f32,
//    or f64 for f64 inputs on the CPU), so a training step never waits for the host. Upstream
//    gradients of scalars are also 1-element tensors (`dloss`).
//  - Every op checks shapes, dtypes and devices and throws cohort::Error naming
//    the op and both shapes.
#include <cstdint>
#include <vector>

#include "core/context.hpp"
#include "core/tensor.hpp"

namespace cohort::core::ops {

// ---- convolution ------------------------------------------------------------
struct ConvGeometry {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dilation_h = 1, dilation_w = 1;
  int output_pad_h = 0, output_pad_w = 0;  // conv_transpose2d only
};

Shape conv2d_output_shape(const Shape& x, const Shape& w, const ConvGeometry& g);
Tensor conv2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
              const ConvGeometry& g);  // bias may be undefined
Tensor conv2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape,
                             const ConvGeometry& g);
void conv2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate, const ConvGeometry& g);
// Sum of dy over every dim but the last (bias gradient of conv, conv-transpose, linear).
void bias_backward(Context& ctx, const Tensor& dy, Tensor& db, bool accumulate);

Shape conv_transpose2d_output_shape(const Shape& x, const Shape& w, const ConvGeometry& g);
Tensor conv_transpose2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
                        const ConvGeometry& g);
Tensor conv_transpose2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w,
                                       const Shape& x_shape, const ConvGeometry& g);
void conv_transpose2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                                      bool accumulate, const ConvGeometry& g);

// ---- linear: y[N, out] = x[N, in] * w[out, in]^T + b ---------------------------
Tensor linear(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias);
Tensor linear_backward_input(Context& ctx, const Tensor& dy, const Tensor& w);
void linear_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate);

// ---- batch normalisation over N, H, W per channel (last dim) ------------------
// Sums statistics across data-parallel ranks for SyncBatchNorm. `values` is an
// f32 tensor on the op's device; the reducer replaces it with the sum over ranks.
// Forward reduces [sum x (C), sum x^2 (C), count (1)]; backward reduces
// [sum dy (C), sum dy*xhat (C), count (1)], dy after the ReLU mask.
class StatsReducer {
 public:
  virtual ~StatsReducer() = default;
  virtual void all_reduce_sum(Context& ctx, Tensor& values) = 0;
};

// Which implementation ran the forward; the backward must use the same one.
enum class BatchNormPath : int {
  kernels,      // own kernels (CPU, SyncBN, eval, or what cuDNN declined)
  cudnn,        // cuDNN batch norm, then own add/ReLU epilogue
  cudnn_fused,  // cuDNN's fused batch norm (+ add) + ReLU
};

struct BatchNormSaved {
  Tensor mean;    // f32 [C]: batch mean (train) or running mean (eval)
  Tensor invstd;  // f32 [C]: 1/sqrt(var + eps), biased batch var (train) or running var (eval)
  BatchNormPath path = BatchNormPath::kernels;
  Tensor reserve;  // u8: cuDNN's reserve space between forward and backward (cuDNN paths)
  Tensor beta;     // cudnn_fused: the forward's beta (cuDNN's fused ReLU backward needs it)
};

struct BatchNormArgs {
  double momentum = 0.1;  // running = (1 - m) * running + m * batch (PyTorch convention)
  double eps = 1e-5;
  bool relu = false;                // y = relu(bn(x) [+ residual])
  Tensor residual;                  // optional, same shape as x (fused add)
  StatsReducer* reducer = nullptr;  // SyncBatchNorm; nullptr = this rank's batch only
};

// Training: normalises with batch statistics and updates running_mean and
// running_var (unbiased variance, as PyTorch) in place. gamma, beta, running
// stats are f32 [C] whatever x's dtype.
Tensor batch_norm_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        Tensor& running_mean, Tensor& running_var, const BatchNormArgs& args,
                        BatchNormSaved& saved);
// Evaluation: normalises with the running statistics.
Tensor batch_norm_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       const Tensor& running_mean, const Tensor& running_var,
                       const BatchNormArgs& args, BatchNormSaved& saved);

struct BatchNormGrads {
  Tensor dx;
  Tensor dresidual;  // defined when args.residual was
};
// `y` is the forward output (needed when args.relu). `training` selects the
// batch-statistics backward (train) or the affine backward (eval/frozen stats).
BatchNormGrads batch_norm_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                                   const Tensor& gamma, const BatchNormSaved& saved,
                                   const BatchNormArgs& args, bool training, Tensor& dgamma,
                                   Tensor& dbeta, bool accumulate);

// ---- element-wise -----------------------------------------------------------
Tensor relu(Context& ctx, const Tensor& x);
Tensor relu_backward(Context& ctx, const Tensor& dy, const Tensor& y);
Tensor add(Context& ctx, const Tensor& a, const Tensor& b);  // same shapes
Tensor mul(Context& ctx, const Tensor& a, const Tensor& b);  // same shapes
Tensor scale(Context& ctx, const Tensor& x, double alpha);
// acc += x in place (gradient fan-out sums).
void add_inplace(Context& ctx, Tensor& acc, const Tensor& x);
// Converts dtype on any device (mixed precision casts).
Tensor cast(Context& ctx, const Tensor& x, DType dtype);
void fill(Context& ctx, Tensor& t, double value);

// ---- pooling and resizing (NHWC) ----------------------------------------------
struct PoolGeometry {
  int kernel_h = 2, kernel_w = 2;
  int stride_h = 2, stride_w = 2;
  int pad_h = 0, pad_w = 0;
  bool count_include_pad = true;  // average pooling, as PyTorch's default
};
Shape pool2d_output_shape(const Shape& x, const PoolGeometry& g);
Tensor max_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g);
// Gradient goes to the first maximum of each window (PyTorch's CPU choice).
Tensor max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                           const PoolGeometry& g);
Tensor avg_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g);
Tensor avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape,
                           const PoolGeometry& g);
// PyTorch's bins: start = floor(i*H/out), end = ceil((i+1)*H/out).
Tensor adaptive_avg_pool2d(Context& ctx, const Tensor& x, int out_h, int out_w);
Tensor adaptive_avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape);
// Bilinear, align_corners=false (PyTorch's F.interpolate default for 'bilinear').
Tensor resize_bilinear(Context& ctx, const Tensor& x, int out_h, int out_w);
Tensor resize_bilinear_backward(Context& ctx, const Tensor& dy, const Shape& x_shape);

// ---- channel concat (last dim) ------------------------------------------------
Tensor concat_channels(Context& ctx, const std::vector<Tensor>& xs);
std::vector<Tensor> split_channels(Context& ctx, const Tensor& dy,
                                   const std::vector<int64_t>& channels);

// ---- dropout --------------------------------------------------------------------
// The keep mask is a pure function of (ctx.seed(), offset, element index) through
// a Philox-4x32-10 counter RNG, identical on CPU and CUDA; backward recomputes it,
// so nothing is saved. Kept elements are scaled by 1/(1-p).
Tensor dropout(Context& ctx, const Tensor& x, double p, uint64_t offset);
Tensor dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t offset);
uint32_t philox_uniform_bits(uint64_t seed, uint64_t offset, uint64_t index);  // for tests

// ---- losses (scalar results are 1-element f32 tensors) ------------------------------
// logits [..., C] (e.g. [N,H,W,C] or [N,C]); labels [...] as u8, i32 or i64.
// Mean over non-ignored elements weighted by class_weights[label] (PyTorch's
// reduction='mean'); class_weights optional f32 [C]. Labels outside [0, C) other
// than ignore_index raise an error on the CPU and set the loss to NaN on CUDA.
Tensor softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                             const Tensor& class_weights, int ignore_index = 255);
Tensor softmax_cross_entropy_backward(Context& ctx, const Tensor& dloss, const Tensor& logits,
                                      const Tensor& labels, const Tensor& class_weights,
                                      int ignore_index = 255);

// Mean over valid elements of |pred - target| (L1) or PyTorch's smooth-L1 with
// `beta`. mask: optional, same shape, u8 or f32, valid where nonzero. With no
// valid element the loss is 0 and so is the gradient.
enum class RegressionLoss { l1, smooth_l1 };
Tensor regression_loss(Context& ctx, RegressionLoss kind, const Tensor& pred, const Tensor& target,
                       const Tensor& mask, double beta = 1.0);
Tensor regression_loss_backward(Context& ctx, RegressionLoss kind, const Tensor& dloss,
                                const Tensor& pred, const Tensor& target, const Tensor& mask,
                                double beta = 1.0);

// The denominators of those means, as f32 [1] on the device, for averaging over
// a larger batch than one call sees (micro-batches, ranks): softmax cross
// entropy's is the total class weight of the non-ignored labels (their count
// without class weights; with them a label outside [0, C) raises an error on the
// CPU and gives NaN on CUDA); the regression losses' is the number of valid
// elements of `mask` (`numel` without a mask).
Tensor cross_entropy_normaliser(Context& ctx, const Tensor& labels, const Tensor& class_weights,
                                int ignore_index = 255);
Tensor valid_count(Context& ctx, const Tensor& mask, int64_t numel);
// What one part's mean counts for in the mean over all parts: f32 [1]
//   share = factor * local / total   (0 when total is 0; NaN stays NaN)
// local, total: f32 [1] normalisers (the part's, and the sum over all parts).
Tensor normaliser_share(Context& ctx, const Tensor& local, const Tensor& total, double factor);

// ---- multi-task loss balancing --------------------------------------------------
// Learned homoscedastic-uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018):
//   total = sum_i 0.5 * exp(-s_i) * L_i + 0.5 * s_i,  s = log_vars (one per task,
//   the log of each task's variance), L_i the task losses (1-element tensors).
// A task whose loss stays large learns a large s_i (a small weight); the + s_i
// term keeps s_i from growing without bound. At most kMaxBalancedLosses tasks.
inline constexpr int kMaxBalancedLosses = 8;
Tensor uncertainty_weighted_sum(Context& ctx, const std::vector<Tensor>& losses,
                                const Tensor& log_vars);
// dL_i = dtotal * 0.5 * exp(-s_i) (returned, one per loss);
// ds_i = dtotal * (0.5 - 0.5 * exp(-s_i) * L_i), written into dlog_vars
// (accumulate: added) unless dlog_vars is undefined (frozen weights).
std::vector<Tensor> uncertainty_weighted_sum_backward(Context& ctx, const Tensor& dtotal,
                                                      const std::vector<Tensor>& losses,
                                                      const Tensor& log_vars, Tensor& dlog_vars,
                                                      bool accumulate);

// Weights that are not trained (loss.balancing fixed, or Dynamic Weight Average's
// per-epoch weights): total = sum_i w_i * L_i, w [n] a tensor on the op's device of
// the losses' dtype, so weights that change between steps never need the host.
Tensor weighted_loss_sum(Context& ctx, const std::vector<Tensor>& losses, const Tensor& weights);
// dL_i = w_i * dtotal, one per weight.
std::vector<Tensor> weighted_loss_sum_backward(Context& ctx, const Tensor& dtotal,
                                               const Tensor& weights);
// Running sums for per-epoch mean losses, kept on the device: sums[i] += L_i for
// each of the n losses and sums[n] += 1 (the count). sums: [n + 1], the losses' dtype.
void accumulate_loss_sums(Context& ctx, const std::vector<Tensor>& losses, Tensor& sums);

// ---- per-task gradients (loss.balancing pcgrad | gradnorm) -------------------------
// A multi-task step can take one backward per task and keep each task's gradient
// g_t (f32 [n], flat, all the same n). mask: u8 [n], one byte per element whose
// bits say which parameter set the element belongs to (bit 0: shared by every
// task; bit 1: GradNorm's layer); `bits` selects the elements an op treats as
// "in the set": (mask[e] & bits) != 0.
//
// Gram matrix over the selected elements: f32 [T * T] with
//   gram[i * T + j] = sum_e g_i[e] * g_j[e],   T = grads.size() in 1..kMaxBalancedLosses,
// accumulated in double on the CPU; on CUDA in float block partials added in a
// fixed order in double (the same inputs give the same bits). Slices of the flat buffers give
// partial Gram matrices that sum to the whole one (ranks each take a part).
Tensor task_gram(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask, uint8_t bits);

// PCGrad (Yu et al., NeurIPS 2020) on the selected elements, from the Gram matrix
// of the unweighted task gradients and the task weights w (f32 [T], >= 0): for
// the weighted gradients h_t = w_t g_t, each h_i is projected, against every other
// task j in the order i+1, ..., T-1, 0, ..., i-1 (the paper shuffles; with two
// tasks order does not matter), onto the normal plane of the original h_j when
// they conflict:
//   if h_i' . h_j < 0 and |h_j|^2 > 0:  h_i' -= (h_i' . h_j) / |h_j|^2 * h_j
// and sum_i h_i' = sum_t coeff[t] * g_t. Returns coeff, f32 [T] (every h_i' is a
// combination of the h_t, so the dot products come from the Gram matrix alone).
// Non-finite Gram entries give non-finite coefficients (an fp16 overflow then
// shows in the combined gradient and skips the step).
Tensor pcgrad_coefficients(Context& ctx, const Tensor& gram, const Tensor& weights);

// out[e] = sum_t c_t * g_t[e],  c = in_set[t] where (mask[e] & bits) != 0, else
// out_of_set[t]; in_set, out_of_set: f32 [T]. out: f32 [n]; it may be one of grads
// (each element is read before it is written).
void combine_task_gradients(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask,
                            uint8_t bits, const Tensor& in_set, const Tensor& out_of_set,
                            Tensor& out);

// GradNorm (Chen et al., ICML 2018): one update of the task weights from the
// gradient norms on the chosen layer (all on the device). weights w: f32 [T]
// (sum T; they start at 1; a graph buffer, hence apart from the rest of the
// state, which starts at 0). state: f32 [4, T]:
//   row 0  L(0)      each task's loss at the first update (0: not yet seen)
//   row 1  m, row 2 v  Adam moments of w
//   row 3  [0] the number of updates so far (Adam's bias correction)
// gram: f32 [T * T] over the layer's elements of the UNWEIGHTED task gradients
// times scale^2 (diagonal = squared norms); scale: f32 [1] (the fp16 loss scale;
// undefined = 1). loss_sums: f32 [T + 1], the task losses summed over the ranks
// and then the rank count (accumulate_loss_sums' layout, all-reduced).
// L_t = loss_sums[t] / loss_sums[T] (the mean over the ranks), rounded to f32 as
// L(0) stores it, so the first update's ratios are exactly 1; a task whose L(0)
// is not positive counts as training at the mean rate (ratio 1).
// With n_t = sqrt(gram_tt) / scale, G_t = w_t n_t, r_t = (L_t / L_t(0)) / mean_k(L_k / L_k(0)):
//   target_t = mean_k(G_k) * r_t^alpha   (a constant for the gradient)
//   d/dw_t sum_k |G_k - target_k| = sign(G_t - target_t) * n_t
// then one Adam step on w (lr, beta1, beta2, eps; no weight decay), w clamped at
// >= 0 and rescaled to sum to T (all 1 when the sum is not positive). Nothing
// changes when skip (f32 [1], the loss scaler's flag; undefined = never) is
// non-zero or a norm or loss is not finite. The first update sets L(0) and, since
// every r_t is then 1, still moves w towards equal G_t.
struct GradNormArgs {
  double alpha = 1.5;
  double lr = 0.025;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};
void gradnorm_update(Context& ctx, Tensor& weights, Tensor& state, const Tensor& gram,
                     const Tensor& loss_sums, const Tensor& scale, const Tensor& skip,
                     const GradNormArgs& args);

// ---- reductions -------------------------------------------------------------------
Tensor sum(Context& ctx, const Tensor& x);  // 1-element f32 (f64 for f64 input)
Tensor mean(Context& ctx, const Tensor& x);
// dx = dloss (broadcast) for sum, dloss / numel for mean.
Tensor sum_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype);
Tensor mean_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype);
// Index of the largest element along the last dim: [..., C] -> [...] i32.
Tensor argmax_channels(Context& ctx, const Tensor& x);

// ---- evaluation metrics (accumulated on the op's device; read back once) -----
// Adds one count to confusion[truth, predicted] (i64 [K, K] on the op's device, rows
// truth, columns prediction) for every element whose truth != ignore_index.
// predicted: i32 [...] (argmax_channels' output); truth: u8 or i32, same shape.
// A truth or prediction outside [0, K) (and not ignore_index) is not counted in
// the matrix but in out_of_range (i64 [1]), which the caller checks after reading
// back, since a device cannot throw.
void accumulate_confusion(Context& ctx, const Tensor& predicted, const Tensor& truth,
                          int64_t ignore_index, Tensor& confusion, Tensor& out_of_range);
// Depth errors over the elements where valid != 0 and target > 0: adds
// sum |d - t| / t, sum (d - t)^2 and the count to sums (f64 [3] on the op's device).
// predicted: float (f32/bf16/f16 on CUDA; f32/f64 on CPU) of the same element count as
// target (f32) and valid (u8); shapes may differ only by trailing 1s ([N,H,W,1] vs [N,H,W]).
void accumulate_depth_errors(Context& ctx, const Tensor& predicted, const Tensor& target,
                             const Tensor& valid, Tensor& sums);

}  // namespace cohort::core::ops
