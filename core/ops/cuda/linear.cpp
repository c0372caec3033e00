// linear (y = x w^T + b) and its gradients on cuBLASLt. cuBLAS is column-major;
// a row-major [r, c] buffer is the column-major c x r matrix (its transpose), so
// each product is computed transposed. With xc, wc, dyc the column-major views:
//   forward:   D(out x N)  = T(wc(in x out)) * xc(in x N)
//   dx:        D(in x N)   = wc(in x out) * dyc(out x N)
//   dw:        D(in x out) = xc(in x N) * T(dyc(out x N))
// Compute type is CUBLAS_COMPUTE_32F (true f32; no TF32) for every storage type.
// Heuristic results are cached per problem in the context's CudaBackend.
#include <cublasLt.h>
#include <fmt/format.h>

#include "core/cuda/check.hpp"
#include "core/cuda/context_cuda.hpp"
#include "core/ops/cuda/cuda_common.hpp"
#include "core/ops/cuda/cuda_ops.hpp"

namespace cohort::core::ops::cuda {
namespace {

using core::cuda::CudaBackend;
using core::cuda::MatmulKey;

constexpr size_t kMatmulWorkspace = size_t{32} << 20;  // what NVIDIA suggests for Hopper

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::f16:
      return CUDA_R_16F;
    case DType::bf16:
      return CUDA_R_16BF;
    default:
      return CUDA_R_32F;
  }
}

int alignment_of(const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && u % a != 0)
    a /= 2;
  return a;
}

// RAII for the three cuBLASLt descriptor kinds.
struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  MatmulDesc(bool trans_a, bool trans_b) {
    COHORT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    COHORT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    COHORT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  }
  ~MatmulDesc() {
    if (desc) COHORT_CUBLAS_CHECK_PRINT(cublasLtMatmulDescDestroy(desc));
  }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
};

struct Layout {
  cublasLtMatrixLayout_t desc = nullptr;
  Layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
    COHORT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&desc, type, static_cast<uint64_t>(rows),
                                                   static_cast<uint64_t>(cols), ld));
  }
  ~Layout() {
    if (desc) COHORT_CUBLAS_CHECK_PRINT(cublasLtMatrixLayoutDestroy(desc));
  }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

struct Preference {
  cublasLtMatmulPreference_t desc = nullptr;
  Preference() { COHORT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&desc)); }
  ~Preference() {
    if (desc) COHORT_CUBLAS_CHECK_PRINT(cublasLtMatmulPreferenceDestroy(desc));
  }
  template <typename V>
  void set(cublasLtMatmulPreferenceAttributes_t attr, V value) {
    COHORT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(desc, attr, &value, sizeof(value)));
  }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
};

// Column-major D(m x n) = op(A) * op(B) (+ D when accumulate); op(A) is m x k, op(B) k x n.
// A is stored (trans_a ? k x m : m x k) with leading dimension lda, likewise B.
void gemm(Context& ctx, const char* op, DType dtype, bool trans_a, bool trans_b, int64_t m,
          int64_t n, int64_t k, const void* a, int64_t lda, const void* b, int64_t ldb, void* d,
          int64_t ldd, bool accumulate) {
  CudaBackend& be = core::cuda::cuda_backend(ctx);
  const cudaDataType_t type = cuda_type(dtype);
  MatmulDesc desc(trans_a, trans_b);
  Layout la(type, trans_a ? k : m, trans_a ? m : k, lda);
  Layout lb(type, trans_b ? n : k, trans_b ? k : n, ldb);
  Layout ld(type, m, n, ldd);

  MatmulKey key;
  key.dtype = static_cast<int>(dtype);
  key.trans_a = trans_a;
  key.trans_b = trans_b;
  key.accumulate = accumulate;
  key.m = m;
  key.n = n;
  key.k = k;
  key.lda = lda;
  key.ldb = ldb;
  key.ldd = ldd;
  key.alignment = {alignment_of(a), alignment_of(b), alignment_of(d)};

  auto& cache = be.matmul_algorithms();
  auto it = cache.find(key);
  if (it == cache.end()) {
    Preference pref;
    pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(kMatmulWorkspace));
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, static_cast<uint32_t>(key.alignment[0]));
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, static_cast<uint32_t>(key.alignment[1]));
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, static_cast<uint32_t>(key.alignment[2]));
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, static_cast<uint32_t>(key.alignment[2]));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    COHORT_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(be.cublas_lt(), desc.desc, la.desc, lb.desc,
                                                       ld.desc, ld.desc, pref.desc, 1, &result,
                                                       &found));
    COHORT_CHECK(
        found > 0 && result.state == CUBLAS_STATUS_SUCCESS,
        fmt::format("{}: cuBLASLt has no algorithm for {} gemm m={} n={} k={} "
                    "(trans {}{}, alignments {}/{}/{} bytes)",
                    op, dtype_name(dtype), m, n, k, trans_a ? 'T' : 'N', trans_b ? 'T' : 'N',
                    key.alignment[0], key.alignment[1], key.alignment[2]));
    it = cache.emplace(key, result.algo).first;
  }
  void* ws = be.workspace(kMatmulWorkspace);
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  COHORT_CUBLAS_CHECK(cublasLtMatmul(be.cublas_lt(), desc.desc, &alpha, a, la.desc, b, lb.desc,
                                     &beta, d, ld.desc, d, ld.desc, &it->second, ws,
                                     kMatmulWorkspace, ctx.stream()));
}

void require_operand(const char* op, const char* name, Context& ctx, const Tensor& t, DType dtype,
                     int rank) {
  require_on_device(op, name, ctx, t);
  require_float(op, name, t);
  if (t.dtype() != dtype || t.rank() != rank)
    COHORT_FAIL(fmt::format("{}: {} is {}, expected a {}-D {} tensor", op, name, t.str(), rank,
                            dtype_name(dtype)));
}

}  // namespace

Tensor linear(Context& ctx, const Tensor& x_in, const Tensor& w_in, const Tensor& bias) {
  const char* op = "linear";
  require_operand(op, "x", ctx, x_in, x_in.dtype(), 2);
  require_operand(op, "w", ctx, w_in, x_in.dtype(), 2);
  const Tensor x = aligned16_input(ctx, x_in), w = aligned16_input(ctx, w_in);
  const int64_t batch = x.dim(0), in = x.dim(1), out = w.dim(0);
  COHORT_CHECK(w.dim(1) == in,
               fmt::format("{}: x {} and w {} ([out, in]) disagree on in", op, x.str(), w.str()));
  Tensor y = new_tensor(ctx, Shape{batch, out}, x.dtype());
  if (y.numel() == 0) return y;
  if (in == 0) {
    y.zero_(ctx.stream());
  } else {
    gemm(ctx, op, x.dtype(), /*trans_a=*/true, /*trans_b=*/false, out, batch, in, w.raw(), in,
         x.raw(), in, y.raw(), out, false);
  }
  if (bias.defined()) add_bias_rows(ctx, y, bias);
  return y;
}

Tensor linear_backward_input(Context& ctx, const Tensor& dy_in, const Tensor& w_in) {
  const char* op = "linear_backward_input";
  require_operand(op, "dy", ctx, dy_in, dy_in.dtype(), 2);
  require_operand(op, "w", ctx, w_in, dy_in.dtype(), 2);
  const Tensor dy = aligned16_input(ctx, dy_in), w = aligned16_input(ctx, w_in);
  const int64_t batch = dy.dim(0), out = dy.dim(1), in = w.dim(1);
  COHORT_CHECK(w.dim(0) == out, fmt::format("{}: dy {} and w {} ([out, in]) disagree on out", op,
                                            dy.str(), w.str()));
  Tensor dx = new_tensor(ctx, Shape{batch, in}, dy.dtype());
  if (dx.numel() == 0) return dx;
  if (out == 0) {
    dx.zero_(ctx.stream());
    return dx;
  }
  gemm(ctx, op, dy.dtype(), false, false, in, batch, out, w.raw(), in, dy.raw(), out, dx.raw(), in,
       false);
  return dx;
}

void linear_backward_weight(Context& ctx, const Tensor& dy_in, const Tensor& x_in, Tensor& dw,
                            bool accumulate) {
  const char* op = "linear_backward_weight";
  require_operand(op, "x", ctx, x_in, x_in.dtype(), 2);
  require_operand(op, "dy", ctx, dy_in, x_in.dtype(), 2);
  const Tensor dy = aligned16_input(ctx, dy_in), x = aligned16_input(ctx, x_in);
  require_on_device(op, "dw", ctx, dw);
  require_float(op, "dw", dw);
  const int64_t batch = x.dim(0), in = x.dim(1), out = dy.dim(1);
  COHORT_CHECK(dy.dim(0) == batch && dw.numel() == out * in,
               fmt::format("{}: dy {}, x {} and dw {} do not fit together", op, dy.str(), x.str(),
                           dw.str()));
  if (dw.numel() == 0) return;
  if (batch == 0) {
    if (!accumulate) dw.zero_(ctx.stream());
    return;
  }
  // cuBLASLt writes its own dtype into aligned memory; a dw of another dtype or at
  // an unaligned offset of a flat gradient buffer gets a temporary and an add.
  const bool direct = dw.dtype() == x.dtype() && is_aligned16(dw);
  Tensor target = direct ? dw : new_tensor(ctx, Shape{out, in}, x.dtype());
  gemm(ctx, op, x.dtype(), false, true, in, out, batch, x.raw(), in, dy.raw(), out, target.raw(),
       in, direct && accumulate);
  if (!direct) convert_into(ctx, target, dw, accumulate);
}

}  // namespace cohort::core::ops::cuda
