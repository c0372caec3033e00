#pragma once
// Which device each rank uses: one GPU per local rank (ranks on the same node,
// found by a shared-memory split of MPI_COMM_WORLD), or the CPU when no GPU is
// visible. Two mistakes are refused with a reason rather than left to show up
// as slow or wrong training: more ranks on a node than GPUs, and two ranks on
// one physical GPU (compared by device UUID, so CUDA_VISIBLE_DEVICES remapping
// cannot hide it).
#include <mpi.h>

#include <span>
#include <string>
#include <vector>

#include "core/device.hpp"

namespace cohort::comm {

enum class DevicePolicy {
  automatic,  // a GPU per local rank when GPUs are visible, else the CPU
  cpu,        // always the CPU (CPU ranks with the MPI backend)
  cuda,       // a GPU per local rank; an error when there is none
};
DevicePolicy parse_device_policy(const std::string& text);  // "auto", "cpu", "cuda"

// The GPU index every local rank of one node uses, or -1 for the CPU, from the
// number of GPUs each local rank sees (indexed by local rank). Throws, with the
// same message on every rank of the node, when the node cannot be served:
//  - each rank sees N >= local ranks GPUs: local rank i uses GPU i;
//  - each rank sees exactly one GPU (the launcher bound one per rank, e.g.
//    srun --gpus-per-task=1): every rank uses its GPU 0 (distinctness is then
//    up to check_distinct_gpus);
//  - fewer GPUs than ranks, or ranks that disagree about having GPUs: refused.
std::vector<int> plan_node_gpus(const std::string& host,
                                std::span<const int> visible_per_local_rank, DevicePolicy policy);

// Throws when two local ranks chose the same physical GPU. `uuids` (hex text)
// and `world_ranks` are indexed by local rank.
void check_distinct_gpus(const std::string& host, std::span<const int> world_ranks,
                         std::span<const std::string> uuids);

// Collective over `node_comm` (the ranks of one node): gathers what every local
// rank sees, applies plan_node_gpus and check_distinct_gpus, and, for a GPU,
// makes it the calling thread's current device.
core::Device assign_device(MPI_Comm node_comm, int world_rank, const std::string& host,
                           DevicePolicy policy);

}  // namespace cohort::comm
