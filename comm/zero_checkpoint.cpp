// Stage- and world-size-independent checkpoints of ZeroDataParallel runs: the
// gathered state goes through io::TrainingSnapshot, and every outcome is agreed
// across ranks so that all of them return or all throw the same error.
#include "comm/zero_checkpoint.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <vector>

namespace cohort::comm {

using core::Context;
using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;
using core::io::TrainingProgress;
using core::io::TrainingSnapshot;

namespace {

// A host copy of `values` on the communicator's device (ordered on ctx's stream).
Tensor i64_on_comm(const Communicator& comm, const std::vector<int64_t>& values,
                   const Context& ctx) {
  Tensor host = Tensor::empty(Shape{static_cast<int64_t>(values.size())}, DType::i64);
  std::memcpy(host.raw(), values.data(), values.size() * sizeof(int64_t));
  return comm.device().is_cpu() ? host : host.to(comm.device(), ctx.stream());
}

// The values of an i64 tensor on any device (synchronises ctx).
std::vector<int64_t> i64_values(const Tensor& t, const Context& ctx) {
  const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu(), ctx.stream());
  ctx.synchronize();
  std::vector<int64_t> out(static_cast<size_t>(t.numel()));
  std::memcpy(out.data(), host.raw(), out.size() * sizeof(int64_t));
  return out;
}

// Collective. Each rank passes its own outcome ("" = success). When every rank
// succeeded it returns; otherwise every rank throws the same error: `what`, the
// ranks that failed and the message of the lowest of them (broadcast from it).
void agree(Communicator& comm, Context& ctx, const std::string& error, const std::string& what) {
  const int world = comm.size(), me = comm.rank();
  std::vector<int64_t> mine(static_cast<size_t>(world), 0);
  mine[static_cast<size_t>(me)] = error.empty() ? 0 : 1;
  Tensor flags = i64_on_comm(comm, mine, ctx);
  comm.all_reduce(flags, ReduceOp::sum, ctx.stream())->wait_stream(ctx.stream());
  const std::vector<int64_t> failed = i64_values(flags, ctx);
  std::vector<int> ranks;
  for (int r = 0; r < world; ++r)
    if (failed[static_cast<size_t>(r)] != 0) ranks.push_back(r);
  if (ranks.empty()) return;

  // The first failing rank's text: its length, then its bytes.
  const int root = ranks.front();
  const std::string text = me == root ? error : std::string();
  Tensor length = i64_on_comm(comm, {static_cast<int64_t>(text.size())}, ctx);
  comm.broadcast(length, root, ctx.stream())->wait_stream(ctx.stream());
  const int64_t n = i64_values(length, ctx).at(0);
  Tensor bytes = Tensor::zeros(Shape{n}, DType::u8);
  if (me == root) std::memcpy(bytes.raw(), text.data(), text.size());
  if (!comm.device().is_cpu()) bytes = bytes.to(comm.device(), ctx.stream());
  comm.broadcast(bytes, root, ctx.stream())->wait_stream(ctx.stream());
  if (!bytes.device().is_cpu()) bytes = bytes.to(Device::cpu(), ctx.stream());
  ctx.synchronize();
  const std::string message(static_cast<const char*>(bytes.raw()), static_cast<size_t>(n));
  throw Error(fmt::format("{}: failed on rank{} {} of {}; rank {}: {}", what,
                          ranks.size() == 1 ? "" : "s", fmt::join(ranks, ", "), world, root,
                          message));
}

// Never empty: an empty message would look like success to agree().
std::string describe_error(const std::exception& e) {
  const std::string text = e.what();
  return text.empty() ? std::string("unknown error") : text;
}

void check_graph(const char* what, ZeroDataParallel& zero, const core::nn::Graph& graph) {
  COHORT_CHECK(
      &graph == &zero.graph(),
      fmt::format("{}: `graph` is not the graph of the ZeRO-{} engine", what, zero.stage()));
}

// The counters that identify a checkpoint, compared with rank 0's: ranks that
// read different files at one path (no shared filesystem, a stale copy) must
// not train on. Collective.
std::string compare_with_rank0(Communicator& comm, Context& ctx, const TrainingSnapshot& s) {
  const std::vector<int64_t> mine = {s.progress.step,
                                     s.progress.epoch,
                                     s.progress.sample_in_epoch,
                                     s.optimizer_steps,
                                     static_cast<int64_t>(s.rng_seed),
                                     static_cast<int64_t>(s.rng_offset)};
  Tensor shared = i64_on_comm(comm, mine, ctx);
  comm.broadcast(shared, 0, ctx.stream())->wait_stream(ctx.stream());
  const std::vector<int64_t> rank0 = i64_values(shared, ctx);
  if (rank0 == mine) return {};
  return fmt::format(
      "this rank read another checkpoint than rank 0 (step/epoch/sample/optimizer steps/RNG "
      "seed/RNG offset: {} here, {} on rank 0); every rank must see the same file",
      fmt::join(mine, "/"), fmt::join(rank0, "/"));
}

}  // namespace

void save_zero_checkpoint(const std::string& path, ZeroDataParallel& zero, core::nn::Graph& graph,
                          const core::optim::LossScaler* scaler, Context& ctx,
                          const TrainingProgress& progress) {
  check_graph("save_zero_checkpoint", zero, graph);
  Communicator& comm = zero.communicator();
  // The collective part first, joined by every rank whatever rank 0 meets later.
  Tensor params;  // stage 3: the whole parameter vector
  if (zero.stage() == 3) params = zero.gather_parameters(ctx);
  std::map<std::string, Tensor> optimizer = zero.gather_optimizer_state(ctx);
  std::string error;
  if (comm.rank() == 0) {
    try {
      TrainingSnapshot s;
      s.model = graph.state();  // stages 0-2: every parameter value is whole here
      if (params.defined())
        for (const core::nn::Parameter& p : graph.parameters())
          s.model[p.name] = params.flat(p.offset, p.shape.numel()).view(p.shape);
      s.optimizer = std::move(optimizer);
      s.optimizer_kind = zero.optimizer().config().kind;
      s.optimizer_steps = zero.optimizer().steps(ctx.stream());
      s.rng_seed = ctx.seed();
      s.rng_offset = ctx.rng_offset();
      if (scaler != nullptr && scaler->enabled()) s.loss_scaler = scaler->state(ctx);
      s.progress = progress;
      core::io::write_training_snapshot(path, s, ctx);  // atomic: all of it or no file
    } catch (const std::exception& e) {
      error = describe_error(e);
    }
  }
  agree(comm, ctx, error, fmt::format("save_zero_checkpoint('{}')", path));
}

TrainingProgress load_zero_checkpoint(const std::string& path, ZeroDataParallel& zero,
                                      core::nn::Graph& graph, core::optim::LossScaler* scaler,
                                      Context& ctx) {
  check_graph("load_zero_checkpoint", zero, graph);
  Communicator& comm = zero.communicator();
  const std::string what = fmt::format("load_zero_checkpoint('{}')", path);
  const bool restore_scaler = scaler != nullptr && scaler->enabled();
  // Read and check everything on every rank; nothing changes until all succeeded.
  TrainingSnapshot s;
  std::string error;
  try {
    s = core::io::read_training_snapshot(path);
    core::io::check_training_snapshot(path, s, core::io::model_specs(graph),
                                      core::io::optimizer_specs(graph, zero.optimizer()),
                                      zero.optimizer().config().kind, restore_scaler);
  } catch (const std::exception& e) {
    error = describe_error(e);
  }
  agree(comm, ctx, error, what);
  agree(comm, ctx, compare_with_rank0(comm, ctx, s), what);

  // Work still queued on ctx must not overwrite the loaded values, and the host
  // copies (`s`, `whole`) must outlive the transfers (synchronised at the end).
  ctx.synchronize();
  Tensor whole = Tensor::empty(Shape{graph.num_parameters()}, DType::f32);
  for (const core::nn::Parameter& p : graph.parameters()) {
    const int64_t n = p.shape.numel();
    whole.flat(p.offset, n).copy_from(s.model.at(p.name).view(Shape{n}));
  }
  zero.load_parameters(ctx, whole);
  for (core::nn::Buffer& b : graph.buffers())
    b.value.copy_from(s.model.at(b.name), ctx.stream());
  zero.load_optimizer_state(ctx, s.optimizer);
  zero.optimizer().set_steps(s.optimizer_steps, ctx.stream());
  ctx.set_seed(s.rng_seed, s.rng_offset);
  if (restore_scaler) scaler->set_state(ctx, *s.loss_scaler);
  graph.refresh_compute_weights(ctx);
  ctx.synchronize();
  return s.progress;
}

}  // namespace cohort::comm
