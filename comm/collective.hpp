#pragma once
// What a collective is: the words shared by the communicator, the watchdog's
// messages and check mode's fingerprints.
#include <cstdint>
#include <span>
#include <string>

#include "core/dtype.hpp"

namespace cohort::comm {

enum class CollectiveOp : uint8_t {
  all_reduce,
  reduce_scatter,
  all_gather,
  broadcast,
  barrier,
  reduce,
};
// How many CollectiveOp values there are (for per-op tables).
inline constexpr int kCollectiveOpCount = 6;
static_assert(static_cast<int>(CollectiveOp::reduce) + 1 == kCollectiveOpCount,
              "kCollectiveOpCount must follow the last CollectiveOp");
enum class ReduceOp : uint8_t { sum, average };

const char* op_name(CollectiveOp op);
const char* reduce_name(ReduceOp op);

// One collective as issued by one rank. `sequence` numbers the collectives a
// communicator issues, from 1; it is the "step" of COHORT_FAULT.
struct CollectiveInfo {
  CollectiveOp op = CollectiveOp::barrier;
  core::DType dtype = core::DType::f32;
  int64_t count = 0;  // elements: the tensor (all_reduce, reduce, broadcast), the
                      // input (reduce_scatter) or the output (all_gather)
  ReduceOp reduce = ReduceOp::sum;
  int root = -1;  // broadcast and reduce only
  uint64_t sequence = 0;

  bool operator==(const CollectiveInfo&) const = default;
  // "all_reduce #5 (f32, count 1024, sum)", "reduce #6 (f32, count 256, average, root 2)"
  std::string str() const;
};

// Check mode: a fixed-size record of a CollectiveInfo that ranks all-gather and compare.
struct Fingerprint {
  int64_t fields[6] = {};
  static Fingerprint of(const CollectiveInfo& info);
  CollectiveInfo info() const;
  bool operator==(const Fingerprint&) const = default;
};

// Empty when every rank issued the same collective; otherwise a message that
// names each distinct fingerprint and the ranks that issued it, e.g.
// "ranks 0, 2, 3 issued all_reduce #4 (f32, count 1000, sum) but rank 1 issued
// all_reduce #4 (f32, count 999, sum)". `prints[r]` is rank r's fingerprint.
std::string describe_mismatch(std::span<const Fingerprint> prints);

}  // namespace cohort::comm
