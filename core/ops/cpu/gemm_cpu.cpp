#include "core/ops/cpu/gemm_cpu.hpp"

#include <cblas.h>
#include <fmt/format.h>

#include <limits>

#include "core/error.hpp"

namespace cohort::core::ops::cpu {
namespace {

// OpenBLAS takes `blasint` (32-bit in Debian's build); refuse sizes that would wrap.
blasint to_blas(int64_t v, const char* what, const GemmShape& s) {
  COHORT_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max(),
               fmt::format("gemm: {} = {} does not fit BLAS's index type (m {}, n {}, k {})", what,
                           v, s.m, s.n, s.k));
  return static_cast<blasint>(v);
}

// Degenerate products that BLAS may reject (zero leading dimensions) or that
// must still apply beta to C.
template <typename T>
bool handle_empty(const GemmShape& s, T beta, T* c, int64_t ldc) {
  if (s.m == 0 || s.n == 0) return true;
  if (s.k != 0) return false;
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j)
      c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
  return true;
}

template <typename T, typename Fn>
void run_gemm(Fn blas_fn, const GemmShape& s, T alpha, const T* a, int64_t lda, const T* b,
              int64_t ldb, T beta, T* c, int64_t ldc) {
  if (handle_empty(s, beta, c, ldc)) return;
  blas_fn(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans,
          s.trans_b ? CblasTrans : CblasNoTrans, to_blas(s.m, "m", s), to_blas(s.n, "n", s),
          to_blas(s.k, "k", s), alpha, a, to_blas(lda, "lda", s), b, to_blas(ldb, "ldb", s), beta,
          c, to_blas(ldc, "ldc", s));
}

}  // namespace

void gemm(const GemmShape& s, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
          float beta, float* c, int64_t ldc) {
  run_gemm(cblas_sgemm, s, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(const GemmShape& s, double alpha, const double* a, int64_t lda, const double* b,
          int64_t ldb, double beta, double* c, int64_t ldc) {
  run_gemm(cblas_dgemm, s, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace cohort::core::ops::cpu
