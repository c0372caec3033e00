#include "core/nn/graph.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "core/nn/init.hpp"
#include "core/optim/kernels.hpp"

namespace cohort::core::nn {
namespace {
// Runs `body`; with profiling on, synchronises around it and adds its wall time.
template <typename F>
void timed(bool profiling, Context& ctx, double& total_ms, F&& body) {
  if (!profiling) return body();
  ctx.synchronize();
  const auto start = std::chrono::steady_clock::now();
  body();
  ctx.synchronize();
  total_ms +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

NodeId Graph::input(const std::string& name) {
  COHORT_CHECK(!m_built, fmt::format("Graph::input('{}'): graph is already built", name));
  for (const Node& n : m_nodes)
    COHORT_CHECK(n.name != name, fmt::format("Graph::input: duplicate node name '{}'", name));
  m_nodes.push_back(Node{name, nullptr, {}, {}, {}});
  return static_cast<NodeId>(m_nodes.size() - 1);
}

NodeId Graph::add(const std::string& name, std::unique_ptr<Layer> layer,
                  std::vector<NodeId> inputs) {
  COHORT_CHECK(!m_built, fmt::format("Graph::add('{}'): graph is already built", name));
  COHORT_CHECK(layer != nullptr, fmt::format("Graph::add('{}'): null layer", name));
  COHORT_CHECK(static_cast<int>(inputs.size()) == layer->num_inputs(),
               fmt::format("Graph::add('{}'): {} takes {} inputs, got {}", name, layer->kind(),
                           layer->num_inputs(), inputs.size()));
  for (const Node& n : m_nodes)
    COHORT_CHECK(n.name != name, fmt::format("Graph::add: duplicate node name '{}'", name));
  const NodeId id = static_cast<NodeId>(m_nodes.size());
  for (NodeId in : inputs) {
    COHORT_CHECK(in >= 0 && in < id,
                 fmt::format("Graph::add('{}'): input node {} does not exist yet", name, in));
    m_nodes[in].consumers.push_back(id);
  }
  m_nodes.push_back(Node{name, std::move(layer), std::move(inputs), {}, {}});
  return id;
}

void Graph::build(Device device, uint64_t seed, DType compute) {
  COHORT_CHECK(!m_built, "Graph::build: already built");
  COHORT_CHECK(compute == DType::f32 || compute == DType::bf16 || compute == DType::f16,
               fmt::format("Graph::build: compute dtype must be f32, bf16 or f16, got {}",
                           dtype_name(compute)));
  COHORT_CHECK(compute == DType::f32 || device.is_cuda(),
               fmt::format("Graph::build: {} compute needs a CUDA device (the CPU backend "
                           "computes in f32/f64)",
                           dtype_name(compute)));
  m_device = device;
  m_compute = compute;

  // Lay parameters out in insertion order; the data-parallel engine buckets them
  // in reverse, which is the order their gradients become final.
  std::vector<std::pair<ParamSpec, std::string>> specs;
  int64_t total = 0;
  for (Node& node : m_nodes) {
    if (!node.layer) continue;
    for (const ParamSpec& spec : node.layer->param_specs()) {
      Parameter p;
      p.name = node.name + "." + spec.name;
      p.shape = spec.shape;
      p.offset = total;
      p.no_decay = spec.no_decay;
      p.keep_f32 = spec.keep_f32;
      p.owner = node.layer.get();
      total += spec.shape.numel();
      node.param_indices.push_back(m_params.size());
      m_params.push_back(std::move(p));
      specs.emplace_back(spec, m_params.back().name);
    }
  }

  // Initialise on the host, then move to the device in one copy.
  Tensor host = Tensor::empty(Shape{total}, DType::f32);
  for (size_t i = 0; i < m_params.size(); ++i) {
    Tensor view = host.flat(m_params[i].offset, m_params[i].shape.numel());
    const ParamSpec& spec = specs[i].first;
    initialise(view, spec.init, spec.fan_in, spec.fan_out, seed, specs[i].second);
  }
  Context setup(device);
  m_num_params = total;
  m_flat_params = host.to(device, setup.stream());
  m_flat_grads = Tensor::zeros(Shape{total}, DType::f32, device, setup.stream());
  const bool mixed = compute != DType::f32;
  if (mixed) {
    m_flat_compute = Tensor::empty(Shape{total}, compute, device, setup.stream());
    m_flat_compute_grads = Tensor::zeros(Shape{total}, compute, device, setup.stream());
  }
  for (Parameter& p : m_params) {
    const int64_t n = p.shape.numel();
    p.value = m_flat_params.flat(p.offset, n).view(p.shape);
    p.grad = m_flat_grads.flat(p.offset, n).view(p.shape);
    const bool separate = has_compute_copy(p);
    p.compute = separate ? m_flat_compute.flat(p.offset, n).view(p.shape) : p.value;
    p.compute_grad = separate ? m_flat_compute_grads.flat(p.offset, n).view(p.shape) : p.grad;
  }

  for (Node& node : m_nodes) {
    if (!node.layer) continue;
    std::vector<Parameter*> params;
    for (size_t i : node.param_indices)
      params.push_back(&m_params[i]);
    std::vector<Buffer*> buffers;
    for (const BufferSpec& spec : node.layer->buffer_specs()) {
      Tensor b = Tensor::empty(spec.shape, DType::f32);
      initialise(b, spec.init, 1, 1, seed, node.name + "." + spec.name);
      m_buffers.push_back(Buffer{node.name + "." + spec.name, b.to(device, setup.stream())});
    }
    // Pointers into m_buffers are taken after it stops growing (below).
    node.layer->bind(std::move(params), {});
  }
  size_t next = 0;
  for (Node& node : m_nodes) {
    if (!node.layer) continue;
    std::vector<Buffer*> buffers;
    for (size_t k = 0; k < node.layer->buffer_specs().size(); ++k)
      buffers.push_back(&m_buffers[next++]);
    std::vector<Parameter*> params = node.layer->params();
    node.layer->bind(std::move(params), std::move(buffers));
  }
  m_built = true;
  refresh_compute_weights(setup);
  setup.synchronize();
}

void Graph::check_built(const char* what) const {
  COHORT_CHECK(m_built, fmt::format("Graph::{}: call build() first", what));
}

std::vector<bool> Graph::ancestors_of(const std::vector<NodeId>& nodes) const {
  std::vector<bool> needed(m_nodes.size(), false);
  std::vector<NodeId> stack(nodes.begin(), nodes.end());
  while (!stack.empty()) {
    const NodeId n = stack.back();
    stack.pop_back();
    if (needed[n]) continue;
    needed[n] = true;
    for (NodeId in : m_nodes[n].inputs)
      stack.push_back(in);
  }
  return needed;
}

void Graph::forward(Context& ctx, const std::map<std::string, Tensor>& inputs,
                    const ForwardArgs& args, std::vector<NodeId> wanted) {
  check_built("forward");
  COHORT_CHECK(ctx.device() == m_device,
               fmt::format("Graph::forward: context is on {} but the graph on {}",
                           ctx.device().str(), m_device.str()));
  if (wanted.empty()) {
    for (size_t i = 0; i < m_nodes.size(); ++i)
      if (m_nodes[i].consumers.empty()) wanted.push_back(static_cast<NodeId>(i));
  }
  const std::vector<bool> needed = ancestors_of(wanted);
  const size_t n = m_nodes.size();
  m_backward_done = false;
  m_outputs.assign(n, Tensor());
  m_saved.assign(n, Saved());
  m_ran.assign(n, false);
  m_keep.assign(n, false);
  for (NodeId w : wanted)
    m_keep[w] = true;
  std::vector<int> pending(n, 0);  // consumers still to run forward
  for (size_t i = 0; i < n; ++i)
    for (NodeId c : m_nodes[i].consumers)
      if (needed[c]) ++pending[i];

  for (size_t i = 0; i < n; ++i) {
    if (!needed[i]) continue;
    Node& node = m_nodes[i];
    if (!node.layer) {
      auto it = inputs.find(node.name);
      COHORT_CHECK(it != inputs.end(), fmt::format("Graph::forward: input '{}' is needed but "
                                                   "was not given",
                                                   node.name));
      COHORT_CHECK(it->second.device() == m_device,
                   fmt::format("Graph::forward: input '{}' is {} but the graph runs on {}",
                               node.name, it->second.str(), m_device.str()));
      m_outputs[i] = it->second;
      m_ran[i] = true;
      continue;
    }
    std::vector<Tensor> xs;
    xs.reserve(node.inputs.size());
    for (NodeId in : node.inputs)
      xs.push_back(m_outputs[in]);
    if (m_profiling && m_timings.size() != n) reset_timings();
    try {
      double ignored = 0;
      double& slot = m_profiling ? m_timings[i].forward_ms : ignored;
      if (m_before_layer) m_before_layer(ctx, static_cast<NodeId>(i), *node.layer, false);
      timed(m_profiling, ctx, slot,
            [&] { m_outputs[i] = node.layer->forward(ctx, xs, m_saved[i], args); });
      if (m_after_layer) m_after_layer(ctx, static_cast<NodeId>(i), *node.layer, false);
      if (m_profiling) ++m_timings[i].runs;
    } catch (const Error& e) {
      throw Error(fmt::format("in layer '{}' ({}): {}", node.name, node.layer->kind(), e.what()));
    }
    m_ran[i] = true;
    // An output no longer needed by a later forward is dropped here; a layer that
    // needs it in backward holds its own reference in Saved.
    for (NodeId in : node.inputs)
      if (--pending[in] == 0 && !m_keep[in]) m_outputs[in] = Tensor();
  }
}

const Tensor& Graph::output(NodeId node) const {
  COHORT_CHECK(
      node >= 0 && node < static_cast<NodeId>(m_outputs.size()) && m_outputs[node].defined(),
      fmt::format("Graph::output: node {} was not computed (or not kept) by the last "
                  "forward",
                  node >= 0 && node < num_nodes() ? m_nodes[node].name : std::to_string(node)));
  return m_outputs[node];
}

void Graph::finish_layer_grads(Context& ctx, Node& node, bool accumulate) {
  // With a 16-bit compute dtype the layer wrote compute_grad; fold it into the f32
  // master gradient.
  for (size_t i : node.param_indices) {
    Parameter& p = m_params[i];
    if (!p.trainable || p.compute_grad.shares_storage_with(p.grad)) continue;
    if (accumulate) {
      Tensor g32 = ops::cast(ctx, p.compute_grad, DType::f32);
      ops::add_inplace(ctx, p.grad, g32);
    } else {
      optim::cast_into(ctx, p.grad, p.compute_grad);
    }
  }
}

void Graph::backward(Context& ctx, const std::vector<Seed>& seeds, bool accumulate,
                     bool keep_saved) {
  check_built("backward");
  COHORT_CHECK(!seeds.empty(), "Graph::backward: no loss given");
  const size_t n = m_nodes.size();
  COHORT_CHECK(m_ran.size() == n, "Graph::backward: run forward first");
  COHORT_CHECK(!m_backward_done,
               "Graph::backward: this forward's saved tensors were already used by a backward; "
               "run forward again (backward from several losses at once: pass them together)");
  m_backward_done = !keep_saved;
  for (size_t i : m_frozen_since)
    if (!m_params[i].trainable && m_params[i].grad.defined()) m_params[i].grad.zero_(ctx.stream());
  m_frozen_since.clear();

  const std::vector<bool> needs_grad = nodes_needing_grad();
  std::vector<bool> has_trainable(n, false);
  for (size_t i = 0; i < n; ++i)
    for (size_t pi : m_nodes[i].param_indices)
      has_trainable[i] = has_trainable[i] || m_params[pi].trainable;

  std::vector<Tensor> grads(n);
  for (const Seed& s : seeds) {
    COHORT_CHECK(
        s.node >= 0 && s.node < static_cast<NodeId>(n) && m_ran[s.node],
        fmt::format("Graph::backward: loss node {} did not run in the last forward", s.node));
    Tensor g = s.grad;
    if (!g.defined()) {
      // dL/dL = 1, made once: no allocation or fill kernel per step. Layers never
      // write into their upstream gradient, so sharing it is safe.
      if (!m_unit_seed.defined()) {
        m_unit_seed = Tensor::empty(Shape{1}, DType::f32, m_device, ctx.stream());
        ops::fill(ctx, m_unit_seed, 1.0);
      }
      g = m_unit_seed;
    }
    grads[s.node] = grads[s.node].defined() ? ops::add(ctx, grads[s.node], g) : g;
  }

  std::vector<bool> fired(n, false);
  for (size_t k = n; k-- > 0;) {
    Node& node = m_nodes[k];
    if (!node.layer || !grads[k].defined() || !needs_grad[k]) {
      grads[k] = Tensor();
      continue;
    }
    BackwardArgs args;
    // With a 16-bit compute copy the layer writes this pass's gradient alone and
    // finish_layer_grads adds it to the f32 master gradient; accumulating in the
    // 16-bit buffer too would count earlier micro-batches twice.
    bool separate_compute_grads = false;
    for (size_t pi : node.param_indices)
      separate_compute_grads = separate_compute_grads ||
                               !m_params[pi].compute_grad.shares_storage_with(m_params[pi].grad);
    args.accumulate = accumulate && !separate_compute_grads;
    args.param_grads = has_trainable[k];
    for (NodeId in : node.inputs)
      args.needs_input_grad.push_back(needs_grad[in]);
    std::vector<Tensor> input_grads;
    try {
      double ignored = 0;
      double& slot = m_profiling && m_timings.size() == n ? m_timings[k].backward_ms : ignored;
      if (m_before_layer) m_before_layer(ctx, static_cast<NodeId>(k), *node.layer, true);
      timed(m_profiling, ctx, slot, [&] {
        input_grads = node.layer->backward(ctx, grads[k], m_saved[k], args);
        if (has_trainable[k]) finish_layer_grads(ctx, node, accumulate);
      });
      if (m_after_layer) m_after_layer(ctx, static_cast<NodeId>(k), *node.layer, true);
    } catch (const Error& e) {
      throw Error(fmt::format("in backward of layer '{}' ({}): {}", node.name, node.layer->kind(),
                              e.what()));
    }
    if (!keep_saved) m_saved[k].clear();  // free what forward kept, as early as possible
    grads[k] = Tensor();
    for (size_t j = 0; j < node.inputs.size() && j < input_grads.size(); ++j) {
      const NodeId in = node.inputs[j];
      if (!needs_grad[in] || !input_grads[j].defined()) continue;
      // Fan-out: a new tensor for the sum, never in place, because a layer may hand
      // the same gradient tensor to several inputs.
      grads[in] = grads[in].defined() ? ops::add(ctx, grads[in], input_grads[j]) : input_grads[j];
    }
    if (has_trainable[k]) {
      fired[k] = true;
      if (m_hook) {
        std::vector<Parameter*> ready;
        for (size_t pi : node.param_indices)
          if (m_params[pi].trainable) ready.push_back(&m_params[pi]);
        m_hook(ready);
      }
    }
  }

  // Layers the chosen losses did not reach: their gradient is zero for this step.
  for (size_t k = n; k-- > 0;) {
    if (!has_trainable[k] || fired[k]) continue;
    Node& node = m_nodes[k];
    const NodeId id = static_cast<NodeId>(k);
    std::vector<Parameter*> ready;
    if (m_before_layer) m_before_layer(ctx, id, *node.layer, true);
    for (size_t pi : node.param_indices) {
      Parameter& p = m_params[pi];
      if (!p.trainable) continue;
      if (!accumulate) p.grad.zero_(ctx.stream());
      ready.push_back(&p);
    }
    if (m_after_layer) m_after_layer(ctx, id, *node.layer, true);
    if (m_hook) m_hook(ready);
  }
  if (keep_saved) return;
  for (Saved& s : m_saved)
    s.clear();
}

void Graph::refresh_compute_weights(Context& ctx) {
  check_built("refresh_compute_weights");
  if (m_compute == DType::f32) return;
  COHORT_CHECK(m_flat_params.defined(),
               fmt::format("Graph::refresh_compute_weights: the f32 master weights were released "
                           "(relocate_flat_params), so no {} copy can be made from them",
                           dtype_name(m_compute)));
  optim::cast_into(ctx, m_flat_compute, m_flat_params);
}

void Graph::zero_grad(Context& ctx) {
  check_built("zero_grad");
  if (m_flat_grads.defined()) {
    m_flat_grads.zero_(ctx.stream());
    return;
  }
  for (Parameter& p : m_params)
    if (p.grad.defined()) p.grad.zero_(ctx.stream());
}

namespace {
// Checks a relocation target: f32, `numel` elements, on `device`.
void check_destination(const char* op, const Tensor& t, int64_t numel, Device device) {
  COHORT_CHECK(t.dtype() == DType::f32 && t.numel() == numel && t.device() == device,
               fmt::format("Graph::{}: destination must be f32[{}] on {}, got {}", op, numel,
                           device.str(), t.str()));
}
}  // namespace

void Graph::relocate_flat_params(Context& ctx, const Tensor& destination) {
  check_built("relocate_flat_params");
  if (destination.defined()) {
    check_destination("relocate_flat_params", destination, m_num_params, m_device);
    Tensor target = destination;
    if (m_flat_params.defined()) target.copy_from(m_flat_params, ctx.stream());
  }
  for (Parameter& p : m_params) {
    p.value = destination.defined() ? destination.flat(p.offset, p.shape.numel()).view(p.shape)
                                    : Tensor();
    if (!has_compute_copy(p)) p.compute = p.value;
  }
  // The old buffer is freed on the stream that allocated it, not on ctx's: let
  // ctx's work on it (the copy above, earlier steps) finish first.
  if (m_flat_params.defined()) ctx.synchronize();
  m_flat_params = destination;
}

void Graph::relocate_flat_grads(Context& ctx, const Tensor& destination) {
  check_built("relocate_flat_grads");
  if (destination.defined()) {
    check_destination("relocate_flat_grads", destination, m_num_params, m_device);
    Tensor target = destination;
    if (m_flat_grads.defined()) target.copy_from(m_flat_grads, ctx.stream());
  }
  for (Parameter& p : m_params) {
    p.grad = destination.defined() ? destination.flat(p.offset, p.shape.numel()).view(p.shape)
                                   : Tensor();
    if (!has_compute_copy(p)) p.compute_grad = p.grad;
  }
  // The old buffer is freed on the stream that allocated it, not on ctx's: let
  // ctx's work on it (the copy above, earlier steps) finish first.
  if (m_flat_grads.defined()) ctx.synchronize();
  m_flat_grads = destination;
}

std::vector<bool> Graph::nodes_needing_grad() const {
  // requires_grad: the node has a trainable parameter or depends on one that does.
  const size_t n = m_nodes.size();
  std::vector<bool> needs_grad(n, false);
  for (size_t i = 0; i < n; ++i) {
    bool r = false;
    for (size_t pi : m_nodes[i].param_indices)
      r = r || m_params[pi].trainable;
    for (NodeId in : m_nodes[i].inputs)
      r = r || needs_grad[in];
    needs_grad[i] = r;
  }
  return needs_grad;
}

int Graph::set_trainable(const std::string& prefix, bool trainable) {
  int count = 0;
  for (size_t i = 0; i < m_params.size(); ++i) {
    Parameter& p = m_params[i];
    if (p.name.rfind(prefix, 0) != 0) continue;
    if (p.trainable && !trainable) m_frozen_since.push_back(i);
    p.trainable = trainable;
    ++count;
  }
  COHORT_CHECK(count > 0,
               fmt::format("Graph::set_trainable: no parameter starts with '{}'", prefix));
  return count;
}

Parameter& Graph::parameter(const std::string& name) {
  for (Parameter& p : m_params)
    if (p.name == name) return p;
  COHORT_FAIL(fmt::format("Graph::parameter: no parameter named '{}'", name));
}

std::map<std::string, Tensor> Graph::state() const {
  std::map<std::string, Tensor> out;
  for (const Parameter& p : m_params)
    out.emplace(p.name, p.value);
  for (const Buffer& b : m_buffers)
    out.emplace(b.name, b.value);
  return out;
}

void Graph::reset_timings() {
  m_timings.assign(m_nodes.size(), LayerTiming{});
  for (size_t i = 0; i < m_nodes.size(); ++i) {
    m_timings[i].name = m_nodes[i].name;
    m_timings[i].kind = m_nodes[i].layer ? m_nodes[i].layer->kind() : "input";
  }
}

NodeId Graph::node(const std::string& name) const {
  for (size_t i = 0; i < m_nodes.size(); ++i)
    if (m_nodes[i].name == name) return static_cast<NodeId>(i);
  COHORT_FAIL(fmt::format("Graph::node: no node named '{}'", name));
}

}  // namespace cohort::core::nn
