// Channel (last-dim) concat and split: strided copies of whole elements, any dtype.
#include <string>

#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"

namespace cohort::core::ops::cuda {
namespace {

// dst[r, dst_offset + j] = src[r, src_offset + j] for j < width, r < rows.
template <typename U>
__global__ void copy_columns_kernel(const U* __restrict__ src, int64_t src_stride,
                                    int64_t src_offset, U* __restrict__ dst, int64_t dst_stride,
                                    int64_t dst_offset, int64_t rows, int64_t width) {
  const int64_t total = rows * width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, j = i - r * width;
    dst[r * dst_stride + dst_offset + j] = src[r * src_stride + src_offset + j];
  }
}

void copy_columns(Context& ctx, const Tensor& src, int64_t src_offset, Tensor& dst,
                  int64_t dst_offset, int64_t width) {
  const int64_t rows = rows_of(dst);
  const int64_t total = rows * width;
  if (total == 0) return;
  const int64_t ss = channels_of(src), ds = channels_of(dst);
  const unsigned grid = grid_for(total);
  switch (dtype_size(src.dtype())) {
    case 1:
      copy_columns_kernel<<<grid, kThreads, 0, ctx.stream()>>>(
          static_cast<const uint8_t*>(src.raw()), ss, src_offset, static_cast<uint8_t*>(dst.raw()),
          ds, dst_offset, rows, width);
      break;
    case 2:
      copy_columns_kernel<<<grid, kThreads, 0, ctx.stream()>>>(
          static_cast<const uint16_t*>(src.raw()), ss, src_offset,
          static_cast<uint16_t*>(dst.raw()), ds, dst_offset, rows, width);
      break;
    case 4:
      copy_columns_kernel<<<grid, kThreads, 0, ctx.stream()>>>(
          static_cast<const uint32_t*>(src.raw()), ss, src_offset,
          static_cast<uint32_t*>(dst.raw()), ds, dst_offset, rows, width);
      break;
    default:
      copy_columns_kernel<<<grid, kThreads, 0, ctx.stream()>>>(
          static_cast<const uint64_t*>(src.raw()), ss, src_offset,
          static_cast<uint64_t*>(dst.raw()), ds, dst_offset, rows, width);
      break;
  }
  COHORT_CUDA_LAUNCH_CHECK();
}

void reject_f64(const char* op, const char* name, const Tensor& t) {
  if (t.dtype() == DType::f64) fail_dtype(op, name, t, "f32, bf16, f16, i32, i64 or u8");
}

}  // namespace

Tensor concat_channels(Context& ctx, const std::vector<Tensor>& xs) {
  const char* op = "concat_channels";
  if (xs.empty()) COHORT_FAIL(std::string(op) + ": needs at least one tensor");
  const Tensor& first = xs.front();
  reject_f64(op, "input 0", first);
  int64_t total_c = 0;
  for (const Tensor& x : xs) {
    if (x.dtype() != first.dtype() || x.rank() != first.rank() || x.rank() < 1 ||
        rows_of(x) != rows_of(first))
      COHORT_FAIL(std::string(op) + ": " + x.str() + " cannot be concatenated with " + first.str());
    total_c += channels_of(x);
  }
  Shape out_shape = first.shape();
  out_shape[out_shape.rank() - 1] = total_c;
  Tensor out = new_tensor(ctx, out_shape, first.dtype());
  int64_t offset = 0;
  for (const Tensor& x : xs) {
    copy_columns(ctx, x, 0, out, offset, channels_of(x));
    offset += channels_of(x);
  }
  return out;
}

std::vector<Tensor> split_channels(Context& ctx, const Tensor& dy,
                                   const std::vector<int64_t>& channels) {
  const char* op = "split_channels";
  reject_f64(op, "dy", dy);
  int64_t total_c = 0;
  for (int64_t c : channels)
    total_c += c;
  if (dy.rank() < 1 || total_c != channels_of(dy))
    COHORT_FAIL(std::string(op) + ": channel counts do not add up to the last dim of " + dy.str());
  std::vector<Tensor> outs;
  outs.reserve(channels.size());
  int64_t offset = 0;
  for (int64_t c : channels) {
    Shape shape = dy.shape();
    shape[shape.rank() - 1] = c;
    Tensor part = new_tensor(ctx, shape, dy.dtype());
    copy_columns(ctx, dy, offset, part, 0, c);
    outs.push_back(std::move(part));
    offset += c;
  }
  return outs;
}

}  // namespace cohort::core::ops::cuda
