// signalgemm-wgmma-rates: what one SM sustains for the MMA shapes the mainloops use, with nothing
// else running (no TMA, no barriers, operands fixed in shared memory), in weight elements per SM
// cycle and share of the tensor cores' dense peak:
// - m64nNk16 bf16 wgmmas with A from registers (RS) or shared memory (SS), alone, fed by the nvfp4
//   dequantization of the rows layout or of the mma_fragments layout (mainloop_register_weights.cuh),
//   with the dequantization in the same warps beside them or in warpgroups of its own;
// - e4m3 k32 wgmmas alone and in the fp8_block128 pattern (drain and promote every 128-K block), by two
//   warpgroups of one or two 64-row slices (the kernel: two) and by three of one;
// - whether one instruction kind (FFMA, FMUL, HMUL2, LOP3, PRMT, IMAD) overlaps the wgmmas of its
//   own warps: a loop of (ALU work feeding the next group's A fragment; fence; 4 RS wgmmas; commit;
//   wait for all but that group), its cycles per group with either half alone and with both.
//
//   signalgemm-wgmma-rates [--groups N]
//
// Each CTA (one per SM) runs W MMA warpgroups; each issues groups of four k-steps (a 64-K block,
// the mainloop's group) and waits for all but the newest group, as the mainloop does.
#include <cuda_runtime.h>

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <vector>

#include "bench_util.cuh"
#include "cli.h"
#include "kernels/dequant_fragments.cuh"
#include "kernels/ptx.cuh"

namespace sg = signalgemm::kernels;

constexpr int kSmemBytes = 96 * 1024;  // operands (and one CTA per SM)

// What a variant's MMA warpgroups do per group (a 64-K block: four k16 / k32 steps).
enum class MmaKind { none, rs_bf16, ss_bf16, ss_fp8 };
// The nvfp4 dequantization of the group's A fragments: skipped, feeding the RS wgmmas (the
// mainloop), or computed beside MMAs that read fixed fragments (its results only XOR-ed away).
enum class Dequant { none, feeds_mma, beside, shuffled_feeds_mma };

template <MmaKind kKind, int kN>
struct MmaOf : sg::ptx::WgmmaBf16Rs<kN> {};
template <int kN>
struct MmaOf<MmaKind::ss_bf16, kN> : sg::ptx::WgmmaBf16<kN> {};
template <int kN>
struct MmaOf<MmaKind::ss_fp8, kN> : sg::ptx::WgmmaF8<kN> {};

// The fp8_block128 mainloop's pattern (mainloop_fp8_block128.cuh) without its pipeline: per 128-K
// block and 64-row slice, four k32 wgmmas into a fresh partial, wait for all of them, then
// acc += partial * scale.
template <int kN, int kSlices>
__device__ __forceinline__ void fp8_promoted_block(float (&acc)[kSlices][kN / 2], uint64_t desc_a, uint64_t desc_b,
                                                   float scale) {
  using M = sg::ptx::WgmmaF8<kN>;
#pragma unroll
  for (int slice = 0; slice < kSlices; ++slice) {
    float partial[kN / 2];
    sg::ptx::wgmma_fence();
#pragma unroll
    for (int k = 0; k < 4; ++k) M::mma(partial, desc_a + slice * 512 + 2 * k, desc_b + 2 * k, k > 0);
    sg::ptx::wgmma_commit();
    sg::ptx::wgmma_wait<0>();
    sg::ptx::fence_registers(partial);
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) acc[slice][i] = fmaf(partial[i], scale, acc[slice][i]);
  }
}

// (x & 0x3333) | 0x4040 in one LOP3: the constant 0x4040 comes from a register.
__device__ __forceinline__ uint32_t select_fields(uint32_t x) {
  uint32_t d;
  asm("{\n.reg .b32 c;\nmov.b32 c, 0x4040;\nlop3.b32 %0, %1, 0x3333, c, 0xEA;\n}\n" : "=r"(d) : "r"(x));
  return d;
}

// The dequantization of one k16 step's A fragment, as dequantize_steps does it (nvfp4: two
// 8-byte row words per step, three byte permutes, the e2m1 conversion, four scale multiplies).
__device__ __forceinline__ void dequant_step(uint32_t (&a)[4], uint32_t w0, uint32_t w1, uint32_t v0, uint32_t v1,
                                             uint32_t quad, uint32_t quad_scales, int lane, int step) {
  const uint32_t pick = quad | ((4 + quad) << 4);
  const uint32_t low_cols = sg::fragments::prmt(w0, v0, pick);
  const uint32_t high_cols = sg::fragments::prmt(w1, v1, pick);
  const uint32_t packed = sg::fragments::prmt(low_cols, high_cols, 0x5410u);
  uint32_t values[4];
  sg::fragments::e2m1x8_to_bf16x8_unscaled(packed, values);
  const uint32_t scale_pair = __shfl_sync(0xFFFFFFFFu, quad_scales, (lane & ~3) | step);
  a[0] = sg::fragments::mul_bf16x2_by_low(values[0], scale_pair);
  a[1] = sg::fragments::mul_bf16x2_by_high(values[1], scale_pair);
  a[2] = sg::fragments::mul_bf16x2_by_low(values[2], scale_pair);
  a[3] = sg::fragments::mul_bf16x2_by_high(values[3], scale_pair);
}

// Per group (a 64-K block): for the RS modes the A fragments of four k16 steps (fixed, or
// dequantized from packed words in shared memory: double-buffered as in the mainloop), then four
// wgmmas, commit, and wait for all groups but this one.
template <MmaKind kKind, Dequant kDequant, int kPending, int kN>
__device__ __forceinline__ uint32_t group_loop(int groups, const uint8_t* tokens, const uint8_t* weights) {
  using M = MmaOf<kKind, kN>;
  static_assert(kDequant == Dequant::none || kDequant == Dequant::beside || kKind == MmaKind::rs_bf16,
                "dequantized fragments feed RS MMAs");
  const int lane = threadIdx.x % 32;
  const uint32_t quad = lane % 4;
  const uint64_t desc_b = sg::ptx::smem_desc_kmajor_sw128(tokens);
  const uint64_t desc_a = sg::ptx::smem_desc_kmajor_sw128(weights);
  const uint32_t weights_base = static_cast<uint32_t>(__cvta_generic_to_shared(weights));
  const int row = 16 * ((threadIdx.x / 32) % 4) + lane / 4;
  float acc[M::kRegs];
#pragma unroll
  for (int i = 0; i < M::kRegs; ++i) acc[i] = 0.f;
  sg::ptx::fence_registers(acc);  // zeroed before the first wgmma fence
  uint32_t frag[3][4][4];  // two buffers for the MMAs, one for dequantization beside them
#pragma unroll
  for (int b = 0; b < 3; ++b)
#pragma unroll
    for (int k = 0; k < 4; ++k)
#pragma unroll
      for (int i = 0; i < 4; ++i) frag[b][k][i] = 0x3C003C00u + threadIdx.x + k + i;
  uint32_t sink = 0;
  for (int g2 = 0; g2 < groups; g2 += 2)
#pragma unroll
  for (int buffer = 0; buffer < 2; ++buffer) {  // unrolled: the fragment buffers stay in registers
    const int g = g2 + buffer;
    uint32_t(&a)[4][4] = frag[buffer];
    uint32_t(&dq)[4][4] = kDequant == Dequant::beside ? frag[2] : a;
    if constexpr (kDequant == Dequant::shuffled_feeds_mma) {
      // A pre-shuffled weight layout: the thread's four steps in one 16-byte word per 64-K block,
      // each step's 32 bits the byte-table selectors of its four fragment registers (2-bit fields).
      const uint32_t scale_words = weights_base + 8192 + (row * 4 + (g % 4) * 512);
      const uint32_t quad_scales =
          sg::fragments::e4m3x2_to_bf16x2_times_2p119(sg::ptx::ld_shared_u32(scale_words),
                                                     sg::ptx::ld_shared_u32(scale_words + 32), quad);
      uint32_t v[4];
      asm volatile("ld.volatile.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3])
                   : "r"(weights_base + (threadIdx.x % 128) * 16 + (g % 2) * 2048)
                   : "memory");
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint32_t scale_pair = __shfl_sync(0xFFFFFFFFu, quad_scales, (lane & ~3) | k);
        const uint32_t sel[4] = {select_fields(v[k]), select_fields(v[k] >> 2), select_fields(v[k] >> 16),
                                 select_fields(v[k] >> 18)};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const uint32_t bits = sg::fragments::prmt(0xC0804000u, 0x81800100u, sel[i]);
          dq[k][i] = i % 2 == 0 ? sg::fragments::mul_bf16x2_by_low(bits, scale_pair)
                                : sg::fragments::mul_bf16x2_by_high(bits, scale_pair);
        }
      }
    }
    if constexpr (kDequant == Dequant::feeds_mma || kDequant == Dequant::beside) {
      // The group's two e4m3 scale words (rows r, r + 8) -> the quad's bf16x2 scale pair, as the
      // mainloop does per 64-K block; then the fragments from the packed words.
      const uint32_t scale_words = weights_base + 8192 + (row * 4 + (g % 4) * 512);
      const uint32_t quad_scales =
          sg::fragments::e4m3x2_to_bf16x2_times_2p119(sg::ptx::ld_shared_u32(scale_words),
                                                     sg::ptx::ld_shared_u32(scale_words + 32), quad);
      uint32_t words[2][8];
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const uint32_t logical = (row + 8 * h) * 128 + (g % 2) * 32 + c * 16;
          const uint32_t address = weights_base + (logical ^ (((logical >> 7) & 7) << 4));
          asm volatile("ld.volatile.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                       : "=r"(words[h][4 * c + 0]), "=r"(words[h][4 * c + 1]), "=r"(words[h][4 * c + 2]),
                         "=r"(words[h][4 * c + 3])
                       : "r"(address)
                       : "memory");  // not hoisted out of the loop
        }
#pragma unroll
      for (int k = 0; k < 4; ++k)
        dequant_step(dq[k], words[0][2 * k], words[0][2 * k + 1], words[1][2 * k], words[1][2 * k + 1], quad,
                     quad_scales, lane, k);
    }
    if constexpr (kDequant == Dequant::beside) {
#pragma unroll
      for (int k = 0; k < 4; ++k)
#pragma unroll
        for (int i = 0; i < 4; ++i) sink ^= dq[k][i];
    }
    if constexpr (kKind != MmaKind::none) {
#pragma unroll
      for (int k = 0; k < 4; ++k)
#pragma unroll
        for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[k][i])::"memory");
      sg::ptx::wgmma_fence();
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if constexpr (kKind != MmaKind::rs_bf16)
          M::mma(acc, desc_a + 2 * k, desc_b + 2 * k, true);
        else
          M::mma(acc, a[k], desc_b + 2 * k);
      }
      sg::ptx::wgmma_commit();
      sg::ptx::wgmma_wait<kPending>();
    }
  }
  sg::ptx::wgmma_wait<0>();
  sg::ptx::fence_registers(acc);
  for (int i = 0; i < M::kRegs; ++i) sink ^= __float_as_uint(acc[i]);
  return sink;
}

// One group = one 128-K block of the fp8 pattern, per slice.
template <int kN, int kSlices>
__device__ __forceinline__ uint32_t promoted_loop(int groups, const uint8_t* tokens, const uint8_t* weights) {
  const uint64_t desc_b = sg::ptx::smem_desc_kmajor_sw128(tokens);
  const uint64_t desc_a = sg::ptx::smem_desc_kmajor_sw128(weights);
  float acc[kSlices][kN / 2];
#pragma unroll
  for (int s = 0; s < kSlices; ++s)
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) acc[s][i] = 0.f;
  for (int g = 0; g < groups; ++g) fp8_promoted_block<kN, kSlices>(acc, desc_a, desc_b, 1.0f + g);
  uint32_t sink = 0;
#pragma unroll
  for (int s = 0; s < kSlices; ++s)
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) sink ^= __float_as_uint(acc[s][i]);
  return sink;
}

// kPromoteSlices > 0: the fp8 promotion pattern with that many slices per warpgroup instead.
// kDequantWarpgroups more warpgroups only dequantize (no MMAs), beside the MMA warpgroups.
template <MmaKind kKind, Dequant kDequant, int kPending, int kN, int kWarpgroups, int kPromoteSlices = 0,
          int kDequantWarpgroups = 0>
__global__ void __launch_bounds__(128 * (kWarpgroups + kDequantWarpgroups), 1)
    rates_kernel(int groups, long long* cycles, uint32_t* sink) {
  extern __shared__ __align__(1024) uint8_t smem[];
  // Operands: small nonzero bf16 / e4m3 codes, so the MMAs do real work.
  for (int i = threadIdx.x; i < kSmemBytes / 4; i += blockDim.x) reinterpret_cast<uint32_t*>(smem)[i] = 0x3C003C00u ^ i;
  __syncthreads();
  const uint8_t* tokens = smem;                                              // up to 256 rows x 128 B
  const uint8_t* weights = smem + 32 * 1024 + (threadIdx.x / 128) * 16384;  // 128 rows x 128 B per warpgroup
  const long long start = clock64();
  uint32_t value;
  const bool dequant_role = int(threadIdx.x) >= 128 * kWarpgroups;
  if constexpr (kPromoteSlices > 0)
    value = promoted_loop<kN, kPromoteSlices>(groups, tokens, weights);
  else if (dequant_role)
    value = group_loop<MmaKind::none, Dequant::beside, 1, 32>(groups, tokens, weights);
  else
    value = group_loop<kKind, kDequant, kPending, kN>(groups, tokens, weights);
  const long long stop = clock64();
  if (value == 0x12345678u) sink[0] = value;
  // Several warpgroups may share a role: the slot keeps the slowest of them.
  if (threadIdx.x % 128 == 0) atomicMax(&cycles[2 * blockIdx.x + dequant_role], stop - start);
}

// ---- per-pipe overlap: ALU work of one kind beside the warps' own wgmmas ----------------------

enum class AluOp { ffma, fmul, hmul2, lop3, prmt, imad };
constexpr const char* kAluOpNames[] = {"FFMA", "FMUL", "HMUL2", "LOP3", "PRMT", "IMAD"};

// kLen rounds of 8 independent chains (volatile asm: ptxas keeps them and their count).
template <AluOp kOp, int kLen>
__device__ __forceinline__ void alu_chains(uint32_t (&x)[8]) {
#pragma unroll
  for (int i = 0; i < kLen; ++i)
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      if constexpr (kOp == AluOp::ffma) asm volatile("fma.rn.f32 %0, %0, 0f3F800001, 0f3A000000;" : "+f"(reinterpret_cast<float&>(x[c])));
      if constexpr (kOp == AluOp::fmul) asm volatile("mul.rn.f32 %0, %0, 0f3F800001;" : "+f"(reinterpret_cast<float&>(x[c])));
      if constexpr (kOp == AluOp::hmul2)
        asm volatile("{\n.reg .b32 t;\nmov.b32 t, 0x3F803F80;\nmul.rn.bf16x2 %0, %0, t;\n}\n" : "+r"(x[c]));
      if constexpr (kOp == AluOp::lop3) asm volatile("lop3.b32 %0, %0, 0x5A5A5A5A, 0x0F0F0F0F, 0x96;" : "+r"(x[c]));
      if constexpr (kOp == AluOp::prmt) asm volatile("prmt.b32 %0, %0, 0x12345678, 0x3210;" : "+r"(x[c]));
      if constexpr (kOp == AluOp::imad) asm volatile("mad.lo.u32 %0, %0, 0x10001, 0x3;" : "+r"(x[c]));
    }
}

// Cycles per group and warpgroup: kAlu instructions per thread (0: none) feeding one bit of the
// next group's A fragment, then (kMma) four RS m64nNk16 wgmmas, commit, wait for all but it.
// kPingPong (two warpgroups): their wgmma issues alternate, each warpgroup issuing only after the
// other has issued its group (two named barriers), so that one converts while the other's MMAs run.
template <AluOp kOp, int kAlu, bool kMma, int kN, bool kPingPong = false>
__global__ void __launch_bounds__(256, 1) overlap_kernel(int groups, long long* cycles) {
  extern __shared__ __align__(1024) uint8_t smem[];
  for (int i = threadIdx.x; i < kSmemBytes / 4; i += blockDim.x) reinterpret_cast<uint32_t*>(smem)[i] = 0x3C003C00u ^ (i & 0xFF);
  __syncthreads();
  const uint64_t desc_b = sg::ptx::smem_desc_kmajor_sw128(smem);
  float acc[kN / 2];
#pragma unroll
  for (int i = 0; i < kN / 2; ++i) acc[i] = 0.f;
  sg::ptx::fence_registers(acc);
  uint32_t a[2][4] = {{0x3C003C00u + threadIdx.x, 0x3C003C01u, 0x3C003C02u, 0x3C003C03u},
                      {0x3C003C04u + threadIdx.x, 0x3C003C05u, 0x3C003C06u, 0x3C003C07u}};
  uint32_t x[8];
#pragma unroll
  for (int c = 0; c < 8; ++c) x[c] = 0x3F800000u + threadIdx.x + c;
  const int warpgroup = threadIdx.x / 128;
  // Warpgroup 0 issues first: warpgroup 1's arrival opens its barrier (1) once.
  if (kPingPong && warpgroup == 1) sg::ptx::named_barrier_arrive(1, 256);
  const long long start = clock64();
  for (int g2 = 0; g2 < groups; g2 += 2)
#pragma unroll
    for (int b = 0; b < 2; ++b) {  // unrolled: the fragment buffers stay in registers
      if constexpr (kAlu > 0) {
        alu_chains<kOp, kAlu / 8>(x);
        a[b][0] = (a[b][0] & ~0x10000u) | (x[0] & 0x10000u);  // the group waits for the ALU work
      }
      if constexpr (kMma) {
#pragma unroll
        for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[b][i])::"memory");
        if constexpr (kPingPong) sg::ptx::named_barrier_sync(1 + warpgroup, 256);
        sg::ptx::wgmma_fence();
#pragma unroll
        for (int k = 0; k < 4; ++k) sg::ptx::WgmmaBf16Rs<kN>::mma(acc, a[b], desc_b + 2 * k);
        sg::ptx::wgmma_commit();
        if constexpr (kPingPong) sg::ptx::named_barrier_arrive(2 - warpgroup, 256);
        sg::ptx::wgmma_wait<1>();
      }
    }
  // Warpgroup 1's last arrival (for a turn that never comes) is still open: warpgroup 0 takes it.
  if (kPingPong && warpgroup == 0) sg::ptx::named_barrier_sync(1, 256);
  sg::ptx::wgmma_wait<0>();
  sg::ptx::fence_registers(acc);
  const long long stop = clock64();
  uint32_t sink = 0;
  for (int i = 0; i < kN / 2; ++i) sink ^= __float_as_uint(acc[i]);
  for (int c = 0; c < 8; ++c) sink ^= x[c];
  if (threadIdx.x % 128 == 0) cycles[2 * blockIdx.x + threadIdx.x / 128] = (stop - start) / groups;
  if (sink == 0x12345678u) cycles[0] = 0;
}

template <class Kernel>
long long overlap_cycles(Kernel kernel, int warpgroups, int groups, int sms, long long* cycles) {
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  cudaMemset(cycles, 0, 2 * sms * sizeof(long long));
  kernel<<<sms, 128 * warpgroups, kSmemBytes>>>(groups, cycles);
  if (cudaDeviceSynchronize() != cudaSuccess) return -1;
  std::vector<long long> c(2 * sms);
  cudaMemcpy(c.data(), cycles, 2 * sms * sizeof(long long), cudaMemcpyDeviceToHost);
  return *std::max_element(c.begin(), c.end());
}

// One row: the ALU work alone, the wgmmas alone, both; and the ALU cycles added per instruction.
template <AluOp kOp, int kN, int kAlu>
void overlap_row(int warpgroups, int groups, int sms, long long* cycles) {
  const long long alu = overlap_cycles(overlap_kernel<kOp, kAlu, false, kN>, warpgroups, groups, sms, cycles);
  const long long mma = overlap_cycles(overlap_kernel<kOp, 0, true, kN>, warpgroups, groups, sms, cycles);
  const long long both = overlap_cycles(overlap_kernel<kOp, kAlu, true, kN>, warpgroups, groups, sms, cycles);
  std::printf("%-6s x %3d, m64n%-3d x %d wg: alone %5lld, wgmmas alone %5lld, both %5lld cycles per group "
              "(%.2f cycles per instruction beside the wgmmas, %.2f alone)\n",
              kAluOpNames[int(kOp)], kAlu, kN, warpgroups, alu, mma, both, double(both - mma) / (kAlu * warpgroups),
              double(alu) / (kAlu * warpgroups));
}

// Two warpgroups, ALU work and wgmmas in each, with and without the ping-pong order.
template <AluOp kOp, int kN, int kAlu>
void pingpong_row(int groups, int sms, long long* cycles) {
  const long long alu = overlap_cycles(overlap_kernel<kOp, kAlu, false, kN>, 2, groups, sms, cycles);
  const long long mma = overlap_cycles(overlap_kernel<kOp, 0, true, kN>, 2, groups, sms, cycles);
  const long long both = overlap_cycles(overlap_kernel<kOp, kAlu, true, kN>, 2, groups, sms, cycles);
  const long long mma_pp = overlap_cycles(overlap_kernel<kOp, 0, true, kN, true>, 2, groups, sms, cycles);
  const long long pp = overlap_cycles(overlap_kernel<kOp, kAlu, true, kN, true>, 2, groups, sms, cycles);
  std::printf("%-6s x %3d, m64n%-3d x 2 wg: alone %5lld, wgmmas alone %5lld, both %5lld; ping-pong: wgmmas alone "
              "%5lld, both %5lld cycles per group\n",
              kAluOpNames[int(kOp)], kAlu, kN, alu, mma, both, mma_pp, pp);
}

template <AluOp kOp>
void overlap_rows(int groups, int sms, long long* cycles) {
  for (int warpgroups = 1; warpgroups <= 2; ++warpgroups) {
    overlap_row<kOp, 32, 64>(warpgroups, groups, sms, cycles);
    overlap_row<kOp, 128, 256>(warpgroups, groups, sms, cycles);
  }
}

struct Variant {
  const char* name;
  int n, warpgroups, k_per_mma, slices, dequant_warpgroups;
  void (*kernel)(int, long long*, uint32_t*);
};

using K = MmaKind;
using D = Dequant;
#define V(NAME, KIND, DQ, PENDING, N, W) \
  Variant { NAME, N, W, K::KIND == K::ss_fp8 ? 32 : 16, 1, 0, rates_kernel<K::KIND, D::DQ, PENDING, N, W> }
#define P(NAME, N, W, SLICES) Variant{NAME, N, W, 32, SLICES, 0, rates_kernel<K::ss_fp8, D::none, 0, N, W, SLICES>}
// MMA warpgroups with fixed fragments, and DW more warpgroups dequantizing beside them.
#define S(NAME, KIND, N, W, DW) \
  Variant { NAME, N, W, 16, 1, DW, rates_kernel<K::KIND, D::none, 1, N, W, 0, DW> }

int main(int argc, char** argv) {
  int groups = 4000;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--groups") && i + 1 < argc && signalgemm::bench::parse_int(argv[i + 1], 1, groups)) {
      ++i;
      continue;
    }
    std::fprintf(!std::strcmp(argv[i], "--help") ? stdout : stderr, "usage: %s [--groups N >= 1]\n", argv[0]);
    return !std::strcmp(argv[i], "--help") ? 0 : 2;
  }
  signalgemm::bench::require_hopper("signalgemm-wgmma-rates");
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const Variant variants[] = {
      V("RS, fixed fragments", rs_bf16, none, 1, 32, 2),
      V("RS, fixed fragments", rs_bf16, none, 1, 48, 2),
      V("RS, fixed, wait 0", rs_bf16, none, 0, 32, 2),
      V("dequant only", none, beside, 1, 32, 2),
      V("dequant only", none, beside, 1, 32, 4),
      V("RS fed by dequant", rs_bf16, feeds_mma, 1, 32, 2),
      V("RS fed by dequant", rs_bf16, feeds_mma, 1, 48, 2),
      V("RS fed by dequant", rs_bf16, feeds_mma, 1, 32, 4),
      V("RS fed by dequant", rs_bf16, feeds_mma, 1, 48, 4),
      V("RS fed by dequant, wait 0", rs_bf16, feeds_mma, 0, 32, 2),
      V("RS fed by shuffled dequant", rs_bf16, shuffled_feeds_mma, 1, 32, 2),
      V("RS fed by shuffled dequant", rs_bf16, shuffled_feeds_mma, 1, 48, 2),
      V("RS fed by shuffled dequant", rs_bf16, shuffled_feeds_mma, 1, 32, 4),
      V("RS fed by shuffled dequant", rs_bf16, shuffled_feeds_mma, 1, 48, 4),
      V("RS fixed + dequant beside", rs_bf16, beside, 1, 32, 2),
      V("RS fixed + dequant beside", rs_bf16, beside, 1, 48, 2),
      V("RS fixed + dequant beside", rs_bf16, beside, 1, 32, 4),
      V("SS bf16", ss_bf16, none, 1, 32, 2),
      V("SS bf16", ss_bf16, none, 1, 64, 2),
      V("SS bf16 + dequant beside", ss_bf16, beside, 1, 32, 2),
      V("SS bf16 + dequant beside", ss_bf16, beside, 1, 64, 2),
      V("SS e4m3", ss_fp8, none, 1, 64, 2),
      V("SS e4m3", ss_fp8, none, 1, 128, 2),
      P("SS e4m3 + promotion", 128, 2, 1),
      P("SS e4m3 + promotion", 128, 2, 2),
      P("SS e4m3 + promotion", 128, 3, 1),
      S("RS + dequant warpgroups", rs_bf16, 32, 2, 2),
      S("SS + dequant warpgroups", ss_bf16, 32, 2, 2),
      S("SS + dequant warpgroups", ss_bf16, 64, 2, 2),
      S("SS + dequant warpgroups", ss_bf16, 64, 1, 2),
      S("SS + dequant warpgroups", ss_bf16, 64, 2, 1),
      S("dequant warpgroups alone", none, 32, 0, 2),
  };
  long long* cycles = nullptr;
  uint32_t* sink = nullptr;
  cudaMalloc(&cycles, 2 * sms * sizeof(long long));
  cudaMalloc(&sink, 4);
  int clock_khz = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0);
  std::printf("%d SMs, %d groups of 4 MMAs per warpgroup; per SM: cycles per wgmma (all warpgroups together), "
              "weight elements (A: 64 rows x K) per cycle, tensor-core share of the dense peak\n",
              sms, groups);
  for (const Variant& v : variants) {
    cudaFuncSetAttribute(v.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    const int threads = 128 * (v.warpgroups + v.dequant_warpgroups);
    cudaMemset(cycles, 0, 2 * sms * sizeof(long long));
    v.kernel<<<sms, threads, kSmemBytes>>>(groups, cycles, sink);
    cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) {
      std::printf("%s n%d x%d: %s\n", v.name, v.n, v.warpgroups, cudaGetErrorString(err));
      return 1;
    }
    std::vector<long long> c(2 * sms);
    cudaMemcpy(c.data(), cycles, 2 * sms * sizeof(long long), cudaMemcpyDeviceToHost);
    long long worst[2] = {0, 0};  // MMA warpgroups, dequantizing warpgroups
    for (int i = 0; i < 2 * sms; ++i) worst[i % 2] = std::max(worst[i % 2], c[i]);
    std::printf("%-28s m64n%-3dk%d x %d wg x %d slices", v.name, v.n, v.k_per_mma, v.warpgroups, v.slices);
    if (v.warpgroups > 0) {
      const double per_mma = worst[0] / (double(groups) * 4 * v.warpgroups * v.slices);
      // Dense peak per SM and cycle: 2048 bf16 or 4096 e4m3 multiply-adds (H100/H200).
      const double peak_cycles = 64.0 * v.n * v.k_per_mma / (v.k_per_mma == 32 ? 4096.0 : 2048.0);
      std::printf(": %6.1f cycles/wgmma %6.1f weights/cycle %5.1f%% of peak", per_mma, 64.0 * v.k_per_mma / per_mma,
                  100.0 * peak_cycles / per_mma);
    }
    if (v.dequant_warpgroups > 0)
      std::printf("; + %d dequant wg: %6.1f weights/cycle", v.dequant_warpgroups,
                  double(groups) * 4 * 1024 * v.dequant_warpgroups / worst[1]);
    std::printf("\n");
  }
  std::printf("\nALU work beside the same warps' wgmmas (per SM sub-partition: one warp per warpgroup), cycles per "
              "group of 4 wgmmas:\n");
  const int overlap_groups = 2000;
  overlap_rows<AluOp::ffma>(overlap_groups, sms, cycles);
  overlap_rows<AluOp::fmul>(overlap_groups, sms, cycles);
  overlap_rows<AluOp::hmul2>(overlap_groups, sms, cycles);
  overlap_rows<AluOp::lop3>(overlap_groups, sms, cycles);
  overlap_rows<AluOp::prmt>(overlap_groups, sms, cycles);
  overlap_rows<AluOp::imad>(overlap_groups, sms, cycles);
  std::printf("\nThe same with two warpgroups whose wgmma issues alternate (ping-pong), per group:\n");
  pingpong_row<AluOp::lop3, 32, 64>(overlap_groups, sms, cycles);
  pingpong_row<AluOp::lop3, 48, 64>(overlap_groups, sms, cycles);
  pingpong_row<AluOp::lop3, 48, 32>(overlap_groups, sms, cycles);
  pingpong_row<AluOp::hmul2, 48, 64>(overlap_groups, sms, cycles);
  pingpong_row<AluOp::ffma, 48, 64>(overlap_groups, sms, cycles);
  pingpong_row<AluOp::ffma, 128, 256>(overlap_groups, sms, cycles);
  return 0;
}
