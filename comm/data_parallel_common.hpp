#pragma once
// Internal to comm: what DataParallel and ZeroDataParallel (stages 2/3) share.
// Both cut the flat gradient space into the same buckets: contiguous ranges built
// in reverse parameter order (the order backward finishes them), at most
// bucket_bytes of f32 each, split by frozen parameters (never communicated); the
// graph's grad-ready hook counts a bucket down to its launch.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "comm/communicator.hpp"
#include "core/nn/graph.hpp"

namespace cohort::comm::detail {

// Which bucket each parameter's gradient belongs to.
struct BucketIndex {
  std::vector<int> bucket_of;            // per parameter, -1 when frozen
  std::vector<bool> trainable_at_build;  // per parameter: the flags the buckets were built for

  // Whether a parameter was frozen or unfrozen since the buckets were built.
  bool stale(const std::vector<core::nn::Parameter>& params) const;
  // The bucket of `p` (an element of `params`), whose gradient was just reported
  // ready; throws, naming `engine`, when it is in no bucket.
  size_t bucket_of_ready(const std::vector<core::nn::Parameter>& params,
                         const core::nn::Parameter* p, const char* engine) const;
};

// Rebuilds `buckets` and `index` for the parameters' current trainable flags.
// Bucket: any default-constructible type with members offset, count (int64_t) and
// params (std::vector<size_t>, indices into `params`).
template <typename Bucket>
void build_buckets(const std::vector<core::nn::Parameter>& params, size_t bucket_bytes,
                   std::vector<Bucket>& buckets, BucketIndex& index) {
  buckets.clear();
  index.bucket_of.assign(params.size(), -1);
  index.trainable_at_build.assign(params.size(), false);
  const int64_t cap = static_cast<int64_t>(bucket_bytes / sizeof(float));
  bool open = false;
  // Reverse order: the last parameters' gradients are final first.
  for (size_t k = params.size(); k-- > 0;) {
    const core::nn::Parameter& p = params[k];
    index.trainable_at_build[k] = p.trainable;
    if (!p.trainable) {
      open = false;  // a frozen parameter splits buckets: it is never sent
      continue;
    }
    const int64_t n = p.shape.numel();
    if (!open || buckets.back().count + n > cap) {
      buckets.push_back(Bucket{});
      open = true;
    }
    Bucket& b = buckets.back();
    // Contiguous by construction: params are laid out in insertion order.
    b.offset = p.offset;
    b.count += n;
    b.params.push_back(k);
    index.bucket_of[k] = static_cast<int>(buckets.size() - 1);
  }
}

// finish_backward's error for a bucket whose reduction never started: names the
// bucket's parameters (`bucket_params`, `pending` of them not reported).
[[noreturn]] void fail_unready_bucket(const char* engine,
                                      const std::vector<core::nn::Parameter>& params,
                                      const std::vector<size_t>& bucket_params, int pending);

// Every parameter and buffer of `graph` becomes rank 0's (blocking), then the
// 16-bit compute copies are refreshed from them.
void broadcast_graph_state(Communicator& comm, core::nn::Graph& graph, core::Context& ctx);

}  // namespace cohort::comm::detail
