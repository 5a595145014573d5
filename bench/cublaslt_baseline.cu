#include <cublasLt.h>

#include <map>

#include "bench_util.cuh"
#include "cublaslt_fp8.h"

namespace signalgemm::bench {

namespace {
// cuBLASLt's FP8 block-scaled kernels want dimensions in multiples of 16, so each expert's rows are
// rounded up (the extra rows are computed and discarded: a cost the baseline really has).
int padded_rows(int rows) { return (rows + 15) / 16 * 16; }
std::string status_text(cublasStatus_t s) { return "cublasStatus " + std::to_string(int(s)); }
}  // namespace

// Column-major view: our C[m][n] = A[m][k] B[n][k]^T is C^T (n x m) = B (k x n)^T * A (k x m),
// a TN GEMM (the layout FP8 requires on Hopper) with cuBLAS A := our B and cuBLAS B := our A.
struct CublasLtFp8Grouped::Impl {
  int experts, max_m, n, k;
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 64 << 20;
  float* weight_scales = nullptr;  // 128x128 blocks, per expert
  float* token_scales = nullptr;   // 1x128 per row, per expert
  size_t weight_scale_stride = 0, token_scale_stride = 0;
  struct PerM {
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulHeuristicResult_t algo;
  };
  std::map<int, PerM> per_m;
  std::vector<int> masked_m;
  float alpha = 1.f, beta = 0.f;
};

CublasLtFp8Grouped::CublasLtFp8Grouped(int experts, int max_m, int n, int k) : impl_(new Impl) {
  Impl& s = *impl_;
  s.experts = experts, s.max_m = max_m, s.n = n, s.k = k;
  cublasLtCreate(&s.handle);
  SG_BENCH_CHECK_CUDA(cudaMalloc(&s.workspace, s.workspace_bytes));
  s.weight_scale_stride = size_t((n + 127) / 128) * ((k + 127) / 128);
  s.token_scale_stride = size_t((max_m + 3) / 4 * 4) * ((k + 127) / 128);
  SG_BENCH_CHECK_CUDA(cudaMalloc(&s.weight_scales, 4 * s.weight_scale_stride * experts));
  SG_BENCH_CHECK_CUDA(cudaMalloc(&s.token_scales, 4 * s.token_scale_stride * experts));
  fill_random_scale<<<256, 256>>>(s.weight_scales, s.weight_scale_stride * experts, 1e-3f, 5);
  fill_random_scale<<<256, 256>>>(s.token_scales, s.token_scale_stride * experts, 1e-2f, 6);
}

CublasLtFp8Grouped::~CublasLtFp8Grouped() {
  Impl& s = *impl_;
  for (auto& [m, p] : s.per_m) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
  }
  if (s.desc) cublasLtMatmulDescDestroy(s.desc);
  if (s.handle) cublasLtDestroy(s.handle);
  cudaFree(s.workspace);
  cudaFree(s.weight_scales);
  cudaFree(s.token_scales);
}

std::string CublasLtFp8Grouped::prepare(const std::vector<int>& masked_m) {
  Impl& s = *impl_;
  s.masked_m = masked_m;
  if (cublasStatus_t st = cublasLtMatmulDescCreate(&s.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
      st != CUBLAS_STATUS_SUCCESS)
    return "MatmulDescCreate: " + status_text(st);
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  const int32_t weight_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
  const int32_t token_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a));
  cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b));
  cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &weight_mode, sizeof(weight_mode));
  cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &token_mode, sizeof(token_mode));
  const void* a_scale = s.weight_scales;
  const void* b_scale = s.token_scales;
  cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof(a_scale));
  cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof(b_scale));

  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &s.workspace_bytes,
                                       sizeof(s.workspace_bytes));
  std::string error;
  for (int rows : masked_m) {
    const int m = padded_rows(rows);
    if (m == 0 || s.per_m.count(m)) continue;
    Impl::PerM p{};
    cublasLtMatrixLayoutCreate(&p.a, CUDA_R_8F_E4M3, s.k, s.n, s.k);
    cublasLtMatrixLayoutCreate(&p.b, CUDA_R_8F_E4M3, s.k, m, s.k);
    cublasLtMatrixLayoutCreate(&p.c, CUDA_R_16BF, s.n, m, s.n);
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(s.handle, s.desc, p.a, p.b, p.c, p.c, pref, 1, &p.algo,
                                                             &found);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      error = "no algorithm for m=" + std::to_string(m) + " (" + status_text(st) + ")";
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      break;
    }
    s.per_m[m] = p;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  return error;
}

void CublasLtFp8Grouped::run(const void* a, const void* b, void* c, cudaStream_t stream) {
  Impl& s = *impl_;
  for (int e = 0; e < s.experts; ++e) {
    const int m = padded_rows(s.masked_m[e]);
    if (m == 0) continue;
    const Impl::PerM& p = s.per_m.at(m);
    const void* a_scale = s.weight_scales + s.weight_scale_stride * e;
    const void* b_scale = s.token_scales + s.token_scale_stride * e;
    cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof(a_scale));
    cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof(b_scale));
    const uint8_t* weights = static_cast<const uint8_t*>(b) + size_t(e) * s.n * s.k;
    const uint8_t* tokens = static_cast<const uint8_t*>(a) + size_t(e) * s.max_m * s.k;
    uint8_t* out = static_cast<uint8_t*>(c) + size_t(e) * s.max_m * s.n * 2;
    cublasLtMatmul(s.handle, s.desc, &s.alpha, weights, p.a, tokens, p.b, &s.beta, out, p.c, out, p.c, &p.algo.algo,
                   s.workspace, s.workspace_bytes, stream);
  }
}

}  // namespace signalgemm::bench
