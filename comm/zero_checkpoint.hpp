#pragma once
// Training checkpoints of a ZeroDataParallel run that do not depend on the stage
// or the world size: the file is the one io::save_training_checkpoint writes
// (core/io/training_state.hpp: whole parameters, buffers and unsharded optimizer
// state by name), so a checkpoint written at stage s on W ranks loads at any
// stage on any number of ranks, and into a plain single-process run with
// io::load_training_checkpoint (and the reverse).
//
// Both functions are collective over the engine's communicator and end the same
// way on every rank: they return, or every rank throws the same cohort::Error
// (never a hang, as long as the ranks call them together; the collectives used
// have the communicator's deadline). Filesystem: rank 0 writes; every rank reads
// the file itself, so `path` must name the same file on every rank (a shared
// filesystem, or identical copies). Ranks that read files with different counters
// (step, epoch, optimizer steps, RNG state) are refused.
//
// What is saved is rank 0's view where ranks could differ: its buffers (BatchNorm
// running statistics are equal across ranks with sync_batch_norm, rank 0's
// otherwise), its RNG seed/offset and its loss-scaler state (equal by
// construction: the skip flag is agreed before LossScaler::update). Loading gives
// every rank those values.
#include <string>

#include "comm/zero.hpp"
#include "core/context.hpp"
#include "core/io/training_state.hpp"
#include "core/optim/loss_scaler.hpp"

namespace cohort::comm {

// Collective. Gathers the whole model (stage 3: gather_parameters, mapped back
// to parameter names and shapes) and the whole optimizer state
// (gather_optimizer_state) to rank 0, which writes them atomically with the
// optimizer steps, RNG state, loss-scaler state (when enabled) and `progress`.
// A failure on rank 0 (an unwritable path, a full disk) leaves no file and makes
// every rank throw rank 0's message. `graph` must be the engine's graph.
void save_zero_checkpoint(const std::string& path, ZeroDataParallel& zero, core::nn::Graph& graph,
                          const core::optim::LossScaler* scaler, core::Context& ctx,
                          const core::io::TrainingProgress& progress);

// Collective. Every rank reads `path` and checks everything against its run --
// missing, unexpected and mis-shaped model and optimizer entries, the optimizer
// kind, loss-scaler state when `scaler` is enabled -- and the ranks agree that
// all of them succeeded before anything changes: otherwise every rank throws an
// error naming the path, the rank(s) that failed and the first failing rank's
// reason, and the engine, graph, scaler and ctx are untouched. Then it loads
// the parameters (stage 3: this rank's shard; else the whole), buffers,
// optimizer state (this rank's part), optimizer steps, RNG seed and offset and
// the loss scaler, refreshes 16-bit compute copies, and returns the progress.
core::io::TrainingProgress load_zero_checkpoint(const std::string& path, ZeroDataParallel& zero,
                                                core::nn::Graph& graph,
                                                core::optim::LossScaler* scaler,
                                                core::Context& ctx);

}  // namespace cohort::comm
