#include "comm/device_assignment.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "comm/mpi_check.hpp"
#include "core/error.hpp"

namespace cohort::comm {

#ifdef COHORT_WITH_CUDA
std::string cuda_device_uuid(int index);  // comm/cuda/gpu_uuid.cpp
void cuda_select_device(int index);
#endif

DevicePolicy parse_device_policy(const std::string& text) {
  if (text == "auto") return DevicePolicy::automatic;
  if (text == "cpu") return DevicePolicy::cpu;
  if (text == "cuda" || text == "gpu") return DevicePolicy::cuda;
  COHORT_FAIL(fmt::format("device policy '{}': expected auto, cpu or cuda", text));
}

std::vector<int> plan_node_gpus(const std::string& host, std::span<const int> visible,
                                DevicePolicy policy) {
  const int ranks = static_cast<int>(visible.size());
  std::vector<int> plan(visible.size(), -1);
  if (policy == DevicePolicy::cpu) return plan;
  const auto [min_it, max_it] = std::minmax_element(visible.begin(), visible.end());
  const int fewest = ranks > 0 ? *min_it : 0, most = ranks > 0 ? *max_it : 0;
  if (most == 0) {
    COHORT_CHECK(policy != DevicePolicy::cuda,
                 fmt::format("device assignment on node {}: GPUs were required but none of its {} "
                             "rank(s) sees a GPU",
                             host, ranks));
    return plan;
  }
  COHORT_CHECK(fewest > 0,
               fmt::format("device assignment on node {}: ranks disagree about GPUs (visible "
                           "GPUs per local rank: {}); give every rank the same "
                           "CUDA_VISIBLE_DEVICES setup",
                           host, fmt::join(visible, ", ")));
  if (ranks > 1 && most == 1) {
    // One GPU per rank, bound by the launcher: each uses its own device 0.
    std::fill(plan.begin(), plan.end(), 0);
    return plan;
  }
  COHORT_CHECK(fewest >= ranks,
               fmt::format("device assignment on node {}: {} ranks on this node but only {} "
                           "visible GPU(s) per rank; start at most one rank per GPU (e.g. "
                           "--ntasks-per-node={} or mpirun -npernode {})",
                           host, ranks, fewest, fewest, fewest));
  for (int i = 0; i < ranks; ++i)
    plan[static_cast<size_t>(i)] = i;
  return plan;
}

void check_distinct_gpus(const std::string& host, std::span<const int> world_ranks,
                         std::span<const std::string> uuids) {
  for (size_t a = 0; a < uuids.size(); ++a)
    for (size_t b = a + 1; b < uuids.size(); ++b)
      COHORT_CHECK(uuids[a] != uuids[b],
                   fmt::format("device assignment on node {}: ranks {} and {} would share one "
                               "GPU (UUID {}); each rank needs its own GPU (check "
                               "CUDA_VISIBLE_DEVICES and the launcher's GPU binding)",
                               host, world_ranks[a], world_ranks[b], uuids[a]));
}

core::Device assign_device(MPI_Comm node_comm, int world_rank, const std::string& host,
                           DevicePolicy policy) {
  int local_rank = 0, local_size = 1;
  COHORT_MPI_CHECK(MPI_Comm_rank(node_comm, &local_rank));
  COHORT_MPI_CHECK(MPI_Comm_size(node_comm, &local_size));

  const int mine = policy == DevicePolicy::cpu ? 0 : core::cuda_device_count();
  std::vector<int> visible(static_cast<size_t>(local_size));
  COHORT_MPI_CHECK(MPI_Allgather(&mine, 1, MPI_INT, visible.data(), 1, MPI_INT, node_comm));
  const std::vector<int> plan = plan_node_gpus(host, visible, policy);
  const int gpu = plan[static_cast<size_t>(local_rank)];
  if (gpu < 0) return core::Device::cpu();

#ifdef COHORT_WITH_CUDA
  cuda_select_device(gpu);
  // Fixed-size records so that one MPI_Allgather carries rank and UUID.
  struct Record {
    int world_rank;
    std::array<char, 48> uuid;
  };
  Record record{world_rank, {}};
  const std::string uuid = cuda_device_uuid(gpu);
  std::strncpy(record.uuid.data(), uuid.c_str(), record.uuid.size() - 1);
  std::vector<Record> records(static_cast<size_t>(local_size));
  COHORT_MPI_CHECK(MPI_Allgather(&record, sizeof(Record), MPI_BYTE, records.data(), sizeof(Record),
                                 MPI_BYTE, node_comm));
  std::vector<int> ranks;
  std::vector<std::string> uuids;
  for (const Record& r : records) {
    ranks.push_back(r.world_rank);
    uuids.emplace_back(r.uuid.data());
  }
  check_distinct_gpus(host, ranks, uuids);
  return core::Device::cuda(gpu);
#else
  // cuda_device_count() is 0 in a CPU-only build, so plan_node_gpus chose the CPU.
  (void)world_rank;
  COHORT_FAIL("device assignment: a GPU was planned in a build without CUDA");
#endif
}

}  // namespace cohort::comm
