#pragma once
// Row-major GEMM for the CPU ops, on OpenBLAS:
//   C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C[m, n]
// where op(X) is X or X^T. Leading dimensions are row strides in elements.
// Overloaded for float (sgemm) and double (dgemm) so templated ops call `gemm`.
#include <cstdint>

namespace cohort::core::ops::cpu {

struct GemmShape {
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
};

void gemm(const GemmShape& s, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
          float beta, float* c, int64_t ldc);
void gemm(const GemmShape& s, double alpha, const double* a, int64_t lda, const double* b,
          int64_t ldb, double beta, double* c, int64_t ldc);

}  // namespace cohort::core::ops::cpu
