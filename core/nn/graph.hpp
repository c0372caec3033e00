#pragma once
// Graph: a model as a DAG of layers, built once, then run many times.
//
//   Graph g;
//   auto x = g.input("image");
//   auto c = g.add("conv1", std::make_unique<Conv2d>(...), {x});
//   ...
//   g.build(Device::cuda(0), /*seed=*/0);
//   g.forward(ctx, {{"image", batch}, {"label", labels}}, {.training = true});
//   g.backward(ctx, {loss});
//
// The executor runs forward in insertion order (which is topological: a node's
// inputs must exist when it is added) and backward in reverse. It sums gradients
// where an output fans out, frees each layer's saved tensors right after that
// layer's backward, fires the gradient-ready hook when a layer's parameter
// gradients are final, runs backward from any chosen subset of losses, and skips
// frozen parameters (no gradient computed, no hook).
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/nn/layer.hpp"

namespace cohort::core::nn {

using NodeId = int;

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // ---- building ----------------------------------------------------------------
  NodeId input(const std::string& name);
  NodeId add(const std::string& name, std::unique_ptr<Layer> layer, std::vector<NodeId> inputs);
  // Allocates the flat buffers on `device` and initialises parameters and buffers
  // deterministically from `seed` (each parameter from seed and its own name, so
  // adding a layer does not change the others). `compute` is f32, bf16 or f16.
  void build(Device device, uint64_t seed, DType compute = DType::f32);
  bool built() const { return m_built; }

  // ---- running -------------------------------------------------------------------
  struct ForwardResult {
    std::map<NodeId, Tensor> outputs;
  };
  // Runs the nodes needed for `wanted` (all loss nodes and marked outputs when empty).
  // Inputs are bound by name; an input that no wanted node needs may be omitted.
  void forward(Context& ctx, const std::map<std::string, Tensor>& inputs, const ForwardArgs& args,
               std::vector<NodeId> wanted = {});
  // Output of a node computed by the last forward (kept for wanted nodes only).
  const Tensor& output(NodeId node) const;

  // Backward from the given scalar nodes (losses), each seeded with its gradient
  // (1-element f32 tensor on the graph's device; undefined = 1). Only these losses
  // contribute. accumulate: add into parameter gradients instead of overwriting.
  // keep_saved: leave the forward's saved tensors in place for another backward
  // from the same forward (per-task gradients: one backward per task loss, then
  // the last one without keep_saved frees them). No layer's backward changes what
  // its forward saved, so each of these backwards is what it would be alone.
  struct Seed {
    NodeId node;
    Tensor grad;
  };
  void backward(Context& ctx, const std::vector<Seed>& seeds, bool accumulate = false,
                bool keep_saved = false);

  // Called during backward with a layer's trainable parameters once their
  // gradients are final (and, at the end of backward, for layers that the chosen
  // losses did not reach, whose gradients are then zero or, with accumulate,
  // unchanged). The data-parallel engine starts bucket all-reduces from here.
  using GradReadyHook = std::function<void(std::span<Parameter* const>)>;
  void set_grad_ready_hook(GradReadyHook hook) { m_hook = std::move(hook); }

  // Called before and after each layer's forward (backward = false) and backward
  // (backward = true), including the zeroing of the gradients of layers that the
  // chosen losses did not reach (which counts as their backward). Sharded data
  // parallelism gathers a layer's parameters (ZeRO-3) and points its gradients at
  // transient storage (ZeRO-2/3) in `before`, and releases them in `after`.
  // `ctx` is the context the layer runs on (hooks queue their work on its stream).
  using LayerHook = std::function<void(Context& ctx, NodeId, Layer&, bool backward)>;
  void set_layer_hooks(LayerHook before, LayerHook after) {
    m_before_layer = std::move(before);
    m_after_layer = std::move(after);
  }

  // Copies master weights into the compute-dtype copies (call after each optimizer
  // step when a 16-bit compute dtype is used; a no-op for f32).
  void refresh_compute_weights(Context& ctx);
  void zero_grad(Context& ctx);

  // ---- parameters ------------------------------------------------------------------
  // Freezes (trainable=false) or unfreezes every parameter whose name starts with
  // prefix. A parameter frozen after it had gradients has them zeroed by the next
  // backward (frozen parameters hold zero gradients: clipping norms sum the whole
  // flat buffer).
  int set_trainable(const std::string& prefix, bool trainable);
  std::vector<Parameter>& parameters() { return m_params; }
  const std::vector<Parameter>& parameters() const { return m_params; }
  std::vector<Buffer>& buffers() { return m_buffers; }
  Parameter& parameter(const std::string& name);
  Tensor& flat_params() { return m_flat_params; }
  Tensor& flat_grads() { return m_flat_grads; }
  int64_t num_parameters() const { return m_num_params; }
  // Moves the f32 master weights into `destination` (f32, num_parameters()
  // elements, on the graph's device) and re-points every parameter's `value`
  // (and `compute` where it is the same tensor) into it: sharded data parallelism
  // keeps them in a buffer padded for its collectives. An undefined destination
  // releases the buffer: those views become undefined, and whoever released it
  // points them at storage before each use (ZeRO-3, from the layer hooks).
  // 16-bit compute copies stay where they are. Synchronises ctx (once-off).
  void relocate_flat_params(Context& ctx, const Tensor& destination);
  // The same for the f32 gradients (`grad`, and `compute_grad` where it is the
  // same tensor). With the buffer released, zero_grad() zeroes the gradient views
  // that are defined.
  void relocate_flat_grads(Context& ctx, const Tensor& destination);
  // Parameters and buffers by full name (views, not copies): for checkpoints and import.
  std::map<std::string, Tensor> state() const;

  // ---- profiling ---------------------------------------------------------------------
  // When on, every layer's forward and backward is bracketed by stream
  // synchronisations and timed on the host (slow; for finding hot layers only).
  struct LayerTiming {
    std::string name, kind;
    double forward_ms = 0, backward_ms = 0;
    int64_t runs = 0;
  };
  void set_profiling(bool on) { m_profiling = on; }
  // One entry per layer node, in node order; cleared by reset_timings().
  const std::vector<LayerTiming>& timings() const { return m_timings; }
  void reset_timings();

  NodeId node(const std::string& name) const;
  const std::string& node_name(NodeId id) const { return m_nodes.at(id).name; }
  // The node's layer; nullptr for graph inputs.
  Layer* layer(NodeId id) { return m_nodes.at(id).layer.get(); }
  const std::vector<NodeId>& node_inputs(NodeId id) const { return m_nodes.at(id).inputs; }
  int num_nodes() const { return static_cast<int>(m_nodes.size()); }
  // Per node: whether backward computes anything there, i.e. the node has a
  // trainable parameter or an input that depends on one (backward skips the
  // others, hooks included). Follows set_trainable.
  std::vector<bool> nodes_needing_grad() const;
  // Per node: whether it is one of `nodes` or an input (direct or not) of one.
  std::vector<bool> ancestors_of(const std::vector<NodeId>& nodes) const;
  Device device() const { return m_device; }
  DType compute_dtype() const { return m_compute; }

 private:
  struct Node {
    std::string name;
    std::unique_ptr<Layer> layer;  // null for graph inputs
    std::vector<NodeId> inputs;
    std::vector<NodeId> consumers;
    std::vector<size_t> param_indices;
  };
  void check_built(const char* what) const;
  // Whether `p` has its own 16-bit compute copy (else compute aliases value).
  bool has_compute_copy(const Parameter& p) const { return m_compute != DType::f32 && !p.keep_f32; }
  void finish_layer_grads(Context& ctx, Node& node, bool accumulate);

  std::vector<Node> m_nodes;
  std::vector<Parameter> m_params;
  std::vector<Buffer> m_buffers;
  Tensor m_flat_params, m_flat_grads, m_flat_compute, m_flat_compute_grads;
  int64_t m_num_params = 0;
  Device m_device;
  DType m_compute = DType::f32;
  bool m_built = false;

  // Per-run state.
  std::vector<Tensor> m_outputs;
  std::vector<Saved> m_saved;
  std::vector<bool> m_ran;
  std::vector<bool> m_keep;
  bool m_backward_done = false;  // the last forward's saved tensors are consumed
  Tensor m_unit_seed;            // the default loss gradient, 1
  // Parameters frozen since the last backward: it zeroes their gradients, so that
  // no stale value of a trainable past reaches a gradient norm or a reduction.
  std::vector<size_t> m_frozen_since;
  GradReadyHook m_hook;
  LayerHook m_before_layer, m_after_layer;
  bool m_profiling = false;
  std::vector<LayerTiming> m_timings;
};

}  // namespace cohort::core::nn
