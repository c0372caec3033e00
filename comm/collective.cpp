#include "comm/collective.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <vector>

namespace cohort::comm {

const char* op_name(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::all_reduce:
      return "all_reduce";
    case CollectiveOp::reduce_scatter:
      return "reduce_scatter";
    case CollectiveOp::all_gather:
      return "all_gather";
    case CollectiveOp::broadcast:
      return "broadcast";
    case CollectiveOp::barrier:
      return "barrier";
    case CollectiveOp::reduce:
      return "reduce";
  }
  return "unknown collective";
}

const char* reduce_name(ReduceOp op) {
  return op == ReduceOp::sum ? "sum" : "average";
}

std::string CollectiveInfo::str() const {
  switch (op) {
    case CollectiveOp::barrier:
      return fmt::format("barrier #{}", sequence);
    case CollectiveOp::all_gather:
      return fmt::format("all_gather #{} ({}, count {})", sequence, core::dtype_name(dtype), count);
    case CollectiveOp::broadcast:
      return fmt::format("broadcast #{} ({}, count {}, root {})", sequence, core::dtype_name(dtype),
                         count, root);
    case CollectiveOp::reduce:
      return fmt::format("reduce #{} ({}, count {}, {}, root {})", sequence,
                         core::dtype_name(dtype), count, reduce_name(reduce), root);
    default:
      return fmt::format("{} #{} ({}, count {}, {})", op_name(op), sequence,
                         core::dtype_name(dtype), count, reduce_name(reduce));
  }
}

Fingerprint Fingerprint::of(const CollectiveInfo& info) {
  Fingerprint f;
  f.fields[0] = static_cast<int64_t>(info.op);
  f.fields[1] = static_cast<int64_t>(info.dtype);
  f.fields[2] = info.count;
  f.fields[3] = static_cast<int64_t>(info.reduce);
  f.fields[4] = info.root;
  f.fields[5] = static_cast<int64_t>(info.sequence);
  return f;
}

CollectiveInfo Fingerprint::info() const {
  CollectiveInfo info;
  info.op = static_cast<CollectiveOp>(fields[0]);
  info.dtype = static_cast<core::DType>(fields[1]);
  info.count = fields[2];
  info.reduce = static_cast<ReduceOp>(fields[3]);
  info.root = static_cast<int>(fields[4]);
  info.sequence = static_cast<uint64_t>(fields[5]);
  return info;
}

std::string describe_mismatch(std::span<const Fingerprint> prints) {
  // Distinct fingerprints in order of their first rank, each with its ranks.
  std::vector<std::pair<Fingerprint, std::vector<int>>> groups;
  for (size_t r = 0; r < prints.size(); ++r) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == prints[r]; });
    if (it == groups.end()) {
      groups.push_back({prints[r], {}});
      it = std::prev(groups.end());
    }
    it->second.push_back(static_cast<int>(r));
  }
  if (groups.size() <= 1) return {};
  std::string text;
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& [print, ranks] = groups[g];
    text += fmt::format("{}{} {} issued {}", g == 0 ? "" : " but ",
                        ranks.size() == 1 ? "rank" : "ranks", fmt::join(ranks, ", "),
                        print.info().str());
  }
  return text;
}

}  // namespace cohort::comm
