#include "cublaslt_baseline.h"

#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "bench_util.cuh"
#include "signalgemm/reference.h"

namespace signalgemm::bench {

namespace {

std::string failure(const char* call, cublasStatus_t status) {
  return std::string(call) + " returned " + cublasLtGetStatusName(status);
}

// Returns from the enclosing function (which returns std::string) with the failing call's name.
#define SG_LT_TRY(name, call)                                         \
  do {                                                                \
    const cublasStatus_t status_ = (call);                            \
    if (status_ != CUBLAS_STATUS_SUCCESS) return failure(name, status_); \
  } while (0)

int round_up(int x, int to) { return (x + to - 1) / to * to; }

template <typename T>
cublasStatus_t set_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  return cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value));
}

}  // namespace

// Column-major view: our row-major C[m][n] = A[m][k] B[n][k]^T is, column-major, C^T (n x m) =
// B^T (n x k) * A (k x m) with both operands stored k x rows, leading dimension k: a TN GEMM (the
// only layout FP8 supports on Hopper) with cuBLAS A := our weights and cuBLAS B := our tokens. So
// the 128x128 block scales go to cuBLAS A and the 1x128 per-row scales to cuBLAS B.
struct CublasLtFp8Grouped::Impl {
  int experts = 0, max_m = 0, n = 0, k = 0, sm_count = 0;
  std::string init_error;  // set when the handle could not be created
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = size_t(64) << 20;
  // The baseline's own scales, per expert. Both dimensions of each scale matrix are padded to a
  // multiple of 4 floats, so the buffers are large enough whichever way cuBLASLt orders them and
  // every expert's slice starts 16-byte aligned.
  float* weight_scales = nullptr;  // 128x128 blocks
  float* token_scales = nullptr;   // 1x128 per token row
  size_t weight_scale_stride = 0, token_scale_stride = 0;  // floats per expert

  struct Problem {  // one per distinct padded row count
    cublasLtMatrixLayout_t weights = nullptr, tokens = nullptr, out = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  std::map<int, Problem> problems;
  std::vector<int> padded_rows;  // per expert; 0 = nothing to compute
  float alpha = 1.f, beta = 0.f;

  std::string create_descriptor();
  void fill_scales();  // the baseline's own scales, random (the timed runs')
  // The expert with rows: its output against float64 dot products of its operands at a few places.
  std::string check_expert(int e, int real_rows, const void* tokens, const void* weights, const void* out) const;
  // Layouts and algorithm for `rows` padded rows; stored only when cuBLASLt has an algorithm.
  std::string add_problem(int rows, cublasLtMatmulPreference_t preference);
  std::string describe_problem(int rows, cublasLtMatmulPreference_t preference, Problem& p);
  static void destroy(Problem& p);
};

std::string CublasLtFp8Grouped::Impl::create_descriptor() {
  SG_LT_TRY("cublasLtMatmulDescCreate", cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T, no_transpose = CUBLAS_OP_N;
  const int32_t weight_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
  const int32_t token_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  SG_LT_TRY("set TRANSA", set_attribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, transpose));
  SG_LT_TRY("set TRANSB", set_attribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, no_transpose));
  SG_LT_TRY("set A_SCALE_MODE BLK128x128_32F", set_attribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, weight_mode));
  SG_LT_TRY("set B_SCALE_MODE VEC128_32F", set_attribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, token_mode));
  if (sm_count > 0) SG_LT_TRY("set SM_COUNT_TARGET", set_attribute(desc, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, sm_count));
  // Expert 0's scales so the heuristic sees a complete block-scaled description.
  SG_LT_TRY("set A_SCALE_POINTER",
            set_attribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(weight_scales)));
  SG_LT_TRY("set B_SCALE_POINTER",
            set_attribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(token_scales)));
  return {};
}

void CublasLtFp8Grouped::Impl::destroy(Problem& p) {
  if (p.weights) cublasLtMatrixLayoutDestroy(p.weights);
  if (p.tokens) cublasLtMatrixLayoutDestroy(p.tokens);
  if (p.out) cublasLtMatrixLayoutDestroy(p.out);
  p = Problem{};
}

std::string CublasLtFp8Grouped::Impl::add_problem(int rows, cublasLtMatmulPreference_t preference) {
  Problem p;
  std::string why = describe_problem(rows, preference, p);
  if (why.empty())
    problems[rows] = p;
  else
    destroy(p);
  return why;
}

std::string CublasLtFp8Grouped::Impl::describe_problem(int rows, cublasLtMatmulPreference_t preference, Problem& p) {
  SG_LT_TRY("cublasLtMatrixLayoutCreate(weights)", cublasLtMatrixLayoutCreate(&p.weights, CUDA_R_8F_E4M3, k, n, k));
  SG_LT_TRY("cublasLtMatrixLayoutCreate(tokens)", cublasLtMatrixLayoutCreate(&p.tokens, CUDA_R_8F_E4M3, k, rows, k));
  SG_LT_TRY("cublasLtMatrixLayoutCreate(out)", cublasLtMatrixLayoutCreate(&p.out, CUDA_R_16BF, n, rows, n));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  SG_LT_TRY("cublasLtMatmulAlgoGetHeuristic",
            cublasLtMatmulAlgoGetHeuristic(handle, desc, p.weights, p.tokens, p.out, p.out, preference, 1, &result,
                                           &found));
  if (found == 0 || result.state != CUBLAS_STATUS_SUCCESS)
    return "no algorithm for " + std::to_string(rows) + " rows (N=" + std::to_string(n) + ", K=" + std::to_string(k) +
           ")";
  p.algo = result.algo;
  return {};
}

CublasLtFp8Grouped::CublasLtFp8Grouped(int experts, int max_m, int n, int k, int sm_count) : impl_(new Impl) {
  Impl& s = *impl_;
  s.experts = experts, s.max_m = max_m, s.n = n, s.k = k, s.sm_count = sm_count;
  if (const cublasStatus_t st = cublasLtCreate(&s.handle); st != CUBLAS_STATUS_SUCCESS) {
    s.handle = nullptr;
    s.init_error = failure("cublasLtCreate", st);
    return;
  }
  const int k_blocks = round_up((k + 127) / 128, 4);
  s.weight_scale_stride = size_t(round_up((n + 127) / 128, 4)) * k_blocks;
  s.token_scale_stride = size_t(round_up(max_m, 4)) * k_blocks;
  SG_BENCH_CHECK_CUDA(cudaMalloc(&s.workspace, s.workspace_bytes));
  SG_BENCH_CHECK_CUDA(cudaMalloc(&s.weight_scales, sizeof(float) * s.weight_scale_stride * experts));
  SG_BENCH_CHECK_CUDA(cudaMalloc(&s.token_scales, sizeof(float) * s.token_scale_stride * experts));
  s.fill_scales();
}

void CublasLtFp8Grouped::Impl::fill_scales() {
  fill_random_scale<<<256, 256>>>(weight_scales, weight_scale_stride * experts, 1e-3f, 5);
  SG_BENCH_CHECK_LAUNCH();
  fill_random_scale<<<256, 256>>>(token_scales, token_scale_stride * experts, 1e-2f, 6);
  SG_BENCH_CHECK_LAUNCH();
  // The fills ran on the legacy stream, which does not order the benchmark's non-blocking stream.
  SG_BENCH_CHECK_CUDA(cudaDeviceSynchronize());
}

CublasLtFp8Grouped::~CublasLtFp8Grouped() {
  Impl& s = *impl_;
  for (auto& [rows, p] : s.problems) Impl::destroy(p);
  if (s.desc) cublasLtMatmulDescDestroy(s.desc);
  if (s.handle) cublasLtDestroy(s.handle);
  cudaFree(s.workspace);
  cudaFree(s.weight_scales);
  cudaFree(s.token_scales);
}

std::string CublasLtFp8Grouped::prepare(const std::vector<int>& masked_m, const void* tokens, const void* weights,
                                        void* out, cudaStream_t stream) {
  Impl& s = *impl_;
  if (!s.init_error.empty()) return s.init_error;
  if (s.desc == nullptr) {
    if (std::string why = s.create_descriptor(); !why.empty()) return why;
  }
  s.padded_rows.clear();
  for (int rows : masked_m) {
    const int padded = rows <= 0 ? 0 : cublaslt_padded_rows(rows);
    if (padded > s.max_m) return "padded rows " + std::to_string(padded) + " exceed max_m " + std::to_string(s.max_m);
    s.padded_rows.push_back(padded);
  }

  cublasLtMatmulPreference_t preference = nullptr;
  SG_LT_TRY("cublasLtMatmulPreferenceCreate", cublasLtMatmulPreferenceCreate(&preference));
  std::string why;
  if (const cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
          preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &s.workspace_bytes, sizeof(s.workspace_bytes));
      st != CUBLAS_STATUS_SUCCESS)
    why = failure("set PREF_MAX_WORKSPACE_BYTES", st);
  for (int rows : s.padded_rows) {
    if (!why.empty()) break;
    if (rows > 0 && s.problems.count(rows) == 0) why = s.add_problem(rows, preference);
  }
  cublasLtMatmulPreferenceDestroy(preference);
  if (!why.empty()) return why;

  // One full pass: cuBLASLt may accept a description at heuristic time and refuse it at launch. It
  // runs with uniform scales (0.5 on the weights, 0.25 on the tokens), whatever their layout, so that
  // one expert's output can be checked: the operands' orientation and both scales applied (the
  // block-scale layout itself is not: the timed runs use the baseline's own scales).
  // On `stream`: a cudaMemcpy from pageable memory may return before its DMA lands, and the
  // non-blocking stream is not ordered after it (H200 12:31-12:36: the first pass read the old
  // token scales, the second the new).
  const auto fill = [&](float* p, size_t count, float value) {
    const std::vector<float> host(count, value);
    SG_BENCH_CHECK_CUDA(cudaMemcpyAsync(p, host.data(), count * sizeof(float), cudaMemcpyHostToDevice, stream));
    SG_BENCH_CHECK_CUDA(cudaStreamSynchronize(stream));  // `host` lives only until here
  };
  fill(s.weight_scales, s.weight_scale_stride * s.experts, 0.5f);
  fill(s.token_scales, s.token_scale_stride * s.experts, 0.25f);
  if (why = run(tokens, weights, out, stream); !why.empty()) return why;
  SG_BENCH_CHECK_CUDA(cudaStreamSynchronize(stream));
  SG_BENCH_CHECK_CUDA(cudaGetLastError());
  const auto first = std::find_if(masked_m.begin(), masked_m.end(), [](int rows) { return rows > 0; });
  if (first != masked_m.end())
    if (why = s.check_expert(int(first - masked_m.begin()), *first, tokens, weights, out); !why.empty()) {
      // Whether a second run computes the same tells a transient fault from a wrong configuration.
      if (std::string again = run(tokens, weights, out, stream); !again.empty()) return why + "; " + again;
      SG_BENCH_CHECK_CUDA(cudaStreamSynchronize(stream));
      const std::string second = s.check_expert(int(first - masked_m.begin()), *first, tokens, weights, out);
      return why + " | second run: " + (second.empty() ? "matched (a transient fault; not timed)" : second);
    }
  s.fill_scales();
  return {};
}

std::string CublasLtFp8Grouped::Impl::check_expert(int e, int real_rows, const void* tokens, const void* weights,
                                                   const void* out) const {
  const int sample_rows[] = {0, real_rows / 2, real_rows - 1};
  int failures = 0;
  std::string first_failure;
  const int sample_cols[] = {0, 1, n / 3, n / 2 + 1, n - 1};
  std::vector<uint8_t> a(k), b(k);
  const auto* expert_tokens = static_cast<const uint8_t*>(tokens) + size_t(e) * max_m * k;
  const auto* expert_weights = static_cast<const uint8_t*>(weights) + size_t(e) * n * k;
  for (int r : sample_rows) {
    SG_BENCH_CHECK_CUDA(cudaMemcpy(a.data(), expert_tokens + size_t(r) * k, k, cudaMemcpyDeviceToHost));
    for (int c : sample_cols) {
      uint16_t got_bits = 0;
      SG_BENCH_CHECK_CUDA(cudaMemcpy(b.data(), expert_weights + size_t(c) * k, k, cudaMemcpyDeviceToHost));
      SG_BENCH_CHECK_CUDA(cudaMemcpy(&got_bits, static_cast<const uint16_t*>(out) + (size_t(e) * max_m + r) * n + c,
                                     2, cudaMemcpyDeviceToHost));
      double want = 0, magnitude = 0;
      for (int i = 0; i < k; ++i) {
        const double product = double(ref::e4m3_to_float(a[i])) * ref::e4m3_to_float(b[i]);
        want += product;
        magnitude += std::abs(product);
      }
      want *= 0.5 * 0.25, magnitude *= 0.5 * 0.25;
      const double got = ref::bf16_to_float(got_bits);
      // bf16 output (2^-9 relative), and FP8 tensor cores accumulate each 128-K block with fewer
      // mantissa bits than fp32 (the reason for block promotion): ~1e-5 of the magnitude seen.
      if (!(std::abs(got - want) <= 4e-3 * std::abs(want) + 2e-4 * magnitude + 1e-30)) {
        if (!first_failure.empty()) first_failure += "; ";
        first_failure += "(" + std::to_string(r) + ", " + std::to_string(c) + "): got " + std::to_string(got) +
                         ", want " + std::to_string(want) + " of magnitude " + std::to_string(magnitude);
        ++failures;
      }
    }
  }
  if (failures == 0) return {};
  return "output differs from a float64 dot product at " + std::to_string(failures) + " of 15 places of expert " +
         std::to_string(e) + ": " + first_failure;
}

std::string CublasLtFp8Grouped::run(const void* tokens, const void* weights, void* out, cudaStream_t stream) {
  Impl& s = *impl_;
  for (int e = 0; e < s.experts; ++e) {
    const int rows = s.padded_rows[e];
    if (rows == 0) continue;
    const Impl::Problem& p = s.problems.at(rows);
    const void* weight_scales = s.weight_scales + s.weight_scale_stride * e;
    const void* token_scales = s.token_scales + s.token_scale_stride * e;
    // cublasLtMatmul reads the descriptor when called, so it can be re-pointed between experts.
    SG_LT_TRY("set A_SCALE_POINTER", set_attribute(s.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, weight_scales));
    SG_LT_TRY("set B_SCALE_POINTER", set_attribute(s.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, token_scales));
    const uint8_t* expert_weights = static_cast<const uint8_t*>(weights) + size_t(e) * s.n * s.k;
    const uint8_t* expert_tokens = static_cast<const uint8_t*>(tokens) + size_t(e) * s.max_m * s.k;
    uint8_t* expert_out = static_cast<uint8_t*>(out) + size_t(e) * s.max_m * s.n * 2;
    SG_LT_TRY("cublasLtMatmul",
              cublasLtMatmul(s.handle, s.desc, &s.alpha, expert_weights, p.weights, expert_tokens, p.tokens, &s.beta,
                             expert_out, p.out, expert_out, p.out, &p.algo, s.workspace, s.workspace_bytes, stream));
  }
  return {};
}

}  // namespace signalgemm::bench
