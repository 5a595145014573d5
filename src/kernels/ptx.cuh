// Tiny inline-PTX wrappers for what cuda::ptx (CCCL) does not cover on sm_90a: wgmma and its shared
// memory descriptors, setmaxnreg, shared-memory stores and loads (stmatrix, cp.async), byte
// permutes and bf16x2 packing and arithmetic, the fp8 promotion, named barriers, the cluster-scope
// arrive, and the atomics that publish a signal.
// TMA, mbarrier and proxy fences come from cuda::ptx directly.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace signalgemm::kernels::ptx {

// ---- warpgroup MMA -------------------------------------------------------------------------

// Makes prior register writes of the accumulators visible to the wgmma that follows.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving accumulator reads/writes across an in-flight wgmma.
template <int kRegs>
__device__ __forceinline__ void fence_registers(float (&d)[kRegs]) {
#pragma unroll
  for (int i = 0; i < kRegs; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// Accumulators of a tile's first MMA (or of a split-K piece's) start at zero.
template <int kSlices, int kRegs>
__device__ __forceinline__ void zero_registers(float (&d)[kSlices][kRegs]) {
#pragma unroll
  for (int s = 0; s < kSlices; ++s)
#pragma unroll
    for (int i = 0; i < kRegs; ++i) d[s][i] = 0.f;
}

// Shared-memory matrix descriptor for a K-major tile whose rows are 128 bytes, written by TMA with
// the 128-byte swizzle: 8-row core groups are 1024 bytes apart (stride byte offset); the leading
// byte offset is unused for swizzled K-major layouts. Advancing along K inside the 128-byte row is
// done by adding the byte offset to the start address (the swizzle is applied on absolute address
// bits, which is why tiles must be 1024-byte aligned).
__device__ __forceinline__ uint64_t smem_desc_kmajor_sw128(const void* smem_tile) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_tile));
  uint64_t desc = 0;
  desc |= uint64_t((addr & 0x3FFFF) >> 4);        // start address, 16-byte units
  desc |= uint64_t(1) << 16;                      // leading byte offset (ignored here)
  desc |= uint64_t(1024 >> 4) << 32;              // stride byte offset: 8 rows x 128 B
  desc |= uint64_t(1) << 62;                      // layout: 128-byte swizzle
  return desc;
}

// wgmma.mma_async with D[64 x N] in fp32 registers and A, B from shared memory (descriptors).
// Inline PTX must name every accumulator register, so the specializations below are generated
// by one macro from lists of operand placeholders: %0.. are the accumulators (8 per chunk), then
// desc_a, desc_b and accumulate (the scale-d predicate), numbered REGS, REGS + 1, REGS + 2.
#define SG_WGMMA_D0 "%0, %1, %2, %3, %4, %5, %6, %7"
#define SG_WGMMA_D1 "%8, %9, %10, %11, %12, %13, %14, %15"
#define SG_WGMMA_D2 "%16, %17, %18, %19, %20, %21, %22, %23"
#define SG_WGMMA_D3 "%24, %25, %26, %27, %28, %29, %30, %31"
#define SG_WGMMA_D4 "%32, %33, %34, %35, %36, %37, %38, %39"
#define SG_WGMMA_D5 "%40, %41, %42, %43, %44, %45, %46, %47"
#define SG_WGMMA_D6 "%48, %49, %50, %51, %52, %53, %54, %55"
#define SG_WGMMA_D7 "%56, %57, %58, %59, %60, %61, %62, %63"
#define SG_WGMMA_D8 "%64, %65, %66, %67, %68, %69, %70, %71"
#define SG_WGMMA_D9 "%72, %73, %74, %75, %76, %77, %78, %79"
#define SG_WGMMA_D10 "%80, %81, %82, %83, %84, %85, %86, %87"
#define SG_WGMMA_D11 "%88, %89, %90, %91, %92, %93, %94, %95"
#define SG_WGMMA_OPS0 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
#define SG_WGMMA_OPS1 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define SG_WGMMA_OPS2 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
#define SG_WGMMA_OPS3 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define SG_WGMMA_OPS4 "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39])
#define SG_WGMMA_OPS5 "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
#define SG_WGMMA_OPS6 "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55])
#define SG_WGMMA_OPS7 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define SG_WGMMA_OPS8 "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71])
#define SG_WGMMA_OPS9 "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79])
#define SG_WGMMA_OPS10 "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
#define SG_WGMMA_OPS11 "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
// Register counts that are not a multiple of 8 (the narrow register-operand MMAs n24, n40, n56):
// the whole blocks, then the first half of the next.
#define SG_WGMMA_D_8 SG_WGMMA_D0
#define SG_WGMMA_OPS_8 SG_WGMMA_OPS0
#define SG_WGMMA_D_12 SG_WGMMA_D0 ", %8, %9, %10, %11"
#define SG_WGMMA_OPS_12 SG_WGMMA_OPS0, "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11])
#define SG_WGMMA_D_20 SG_WGMMA_D0 ", " SG_WGMMA_D1 ", %16, %17, %18, %19"
#define SG_WGMMA_OPS_20 SG_WGMMA_OPS0, SG_WGMMA_OPS1, "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19])
#define SG_WGMMA_D_28 SG_WGMMA_D0 ", " SG_WGMMA_D1 ", " SG_WGMMA_D2 ", %24, %25, %26, %27"
#define SG_WGMMA_OPS_28 SG_WGMMA_OPS0, SG_WGMMA_OPS1, SG_WGMMA_OPS2, "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27])
#define SG_WGMMA_D_16 SG_WGMMA_D0 ", " SG_WGMMA_D1
#define SG_WGMMA_OPS_16 SG_WGMMA_OPS0, SG_WGMMA_OPS1
#define SG_WGMMA_D_24 SG_WGMMA_D0 ", " SG_WGMMA_D1 ", " SG_WGMMA_D2
#define SG_WGMMA_OPS_24 SG_WGMMA_OPS0, SG_WGMMA_OPS1, SG_WGMMA_OPS2
#define SG_WGMMA_D_32 SG_WGMMA_D0 ", " SG_WGMMA_D1 ", " SG_WGMMA_D2 ", " SG_WGMMA_D3
#define SG_WGMMA_OPS_32 SG_WGMMA_OPS0, SG_WGMMA_OPS1, SG_WGMMA_OPS2, SG_WGMMA_OPS3
#define SG_WGMMA_D_48 SG_WGMMA_D0 ", " SG_WGMMA_D1 ", " SG_WGMMA_D2 ", " SG_WGMMA_D3 ", " SG_WGMMA_D4 ", " SG_WGMMA_D5
#define SG_WGMMA_OPS_48 SG_WGMMA_OPS0, SG_WGMMA_OPS1, SG_WGMMA_OPS2, SG_WGMMA_OPS3, SG_WGMMA_OPS4, SG_WGMMA_OPS5
#define SG_WGMMA_D_64 SG_WGMMA_D0 ", " SG_WGMMA_D1 ", " SG_WGMMA_D2 ", " SG_WGMMA_D3 ", " SG_WGMMA_D4 ", " SG_WGMMA_D5 ", " SG_WGMMA_D6 ", " SG_WGMMA_D7
#define SG_WGMMA_OPS_64 SG_WGMMA_OPS0, SG_WGMMA_OPS1, SG_WGMMA_OPS2, SG_WGMMA_OPS3, SG_WGMMA_OPS4, SG_WGMMA_OPS5, SG_WGMMA_OPS6, SG_WGMMA_OPS7
#define SG_WGMMA_D_80 SG_WGMMA_D0 ", " SG_WGMMA_D1 ", " SG_WGMMA_D2 ", " SG_WGMMA_D3 ", " SG_WGMMA_D4 ", " SG_WGMMA_D5 ", " SG_WGMMA_D6 ", " SG_WGMMA_D7 ", " SG_WGMMA_D8 ", " SG_WGMMA_D9
#define SG_WGMMA_OPS_80 SG_WGMMA_OPS0, SG_WGMMA_OPS1, SG_WGMMA_OPS2, SG_WGMMA_OPS3, SG_WGMMA_OPS4, SG_WGMMA_OPS5, SG_WGMMA_OPS6, SG_WGMMA_OPS7, SG_WGMMA_OPS8, SG_WGMMA_OPS9
#define SG_WGMMA_D_96 SG_WGMMA_D0 ", " SG_WGMMA_D1 ", " SG_WGMMA_D2 ", " SG_WGMMA_D3 ", " SG_WGMMA_D4 ", " SG_WGMMA_D5 ", " SG_WGMMA_D6 ", " SG_WGMMA_D7 ", " SG_WGMMA_D8 ", " SG_WGMMA_D9 ", " SG_WGMMA_D10 ", " SG_WGMMA_D11
#define SG_WGMMA_OPS_96 SG_WGMMA_OPS0, SG_WGMMA_OPS1, SG_WGMMA_OPS2, SG_WGMMA_OPS3, SG_WGMMA_OPS4, SG_WGMMA_OPS5, SG_WGMMA_OPS6, SG_WGMMA_OPS7, SG_WGMMA_OPS8, SG_WGMMA_OPS9, SG_WGMMA_OPS10, SG_WGMMA_OPS11

#define SG_DEFINE_WGMMA(Name, N, REGS, DESC_B, SCALE_D, SHAPE_AND_TYPES, TAIL)                             \
  template <>                                                                                              \
  struct Name<N> {                                                                                         \
    static constexpr int kRegs = REGS;                                                                     \
    __device__ __forceinline__ static void mma(float (&d)[REGS], uint64_t desc_a, uint64_t desc_b,         \
                                               bool accumulate) {                                          \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #SCALE_D ", 0;\n"                                  \
                   "wgmma.mma_async.sync.aligned." SHAPE_AND_TYPES " {" SG_WGMMA_D_##REGS "}, %" #REGS      \
                   ", %" #DESC_B ", " TAIL ";\n}\n"                                                          \
                   : SG_WGMMA_OPS_##REGS                                                                   \
                   : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)));                                     \
    }                                                                                                      \
  };

// D[64 x N] (+)= A[64 x 32] * B[N x 32]^T, e4m3 inputs, K-major; scale-a/b 1.
template <int N>
struct WgmmaF8;
SG_DEFINE_WGMMA(WgmmaF8, 32, 16, 17, 18, "m64n32k32.f32.e4m3.e4m3", "p, 1, 1")
SG_DEFINE_WGMMA(WgmmaF8, 64, 32, 33, 34, "m64n64k32.f32.e4m3.e4m3", "p, 1, 1")
SG_DEFINE_WGMMA(WgmmaF8, 96, 48, 49, 50, "m64n96k32.f32.e4m3.e4m3", "p, 1, 1")
SG_DEFINE_WGMMA(WgmmaF8, 128, 64, 65, 66, "m64n128k32.f32.e4m3.e4m3", "p, 1, 1")
SG_DEFINE_WGMMA(WgmmaF8, 160, 80, 81, 82, "m64n160k32.f32.e4m3.e4m3", "p, 1, 1")
SG_DEFINE_WGMMA(WgmmaF8, 192, 96, 97, 98, "m64n192k32.f32.e4m3.e4m3", "p, 1, 1")

// D[64 x N] (+)= A[64 x 16] * B[N x 16]^T, bf16 inputs, both K-major (no transpose).
template <int N>
struct WgmmaBf16;
SG_DEFINE_WGMMA(WgmmaBf16, 32, 16, 17, 18, "m64n32k16.f32.bf16.bf16", "p, 1, 1, 0, 0")
SG_DEFINE_WGMMA(WgmmaBf16, 64, 32, 33, 34, "m64n64k16.f32.bf16.bf16", "p, 1, 1, 0, 0")
SG_DEFINE_WGMMA(WgmmaBf16, 128, 64, 65, 66, "m64n128k16.f32.bf16.bf16", "p, 1, 1, 0, 0")
SG_DEFINE_WGMMA(WgmmaBf16, 192, 96, 97, 98, "m64n192k16.f32.bf16.bf16", "p, 1, 1, 0, 0")

// D[64 x N] += A[64 x 16] * B[N x 16]^T, bf16, A from registers (four bf16x2 per thread, the
// mma.m16n8k16 A-fragment layout per warp: warp w of the warpgroup holds rows 16w..16w+15), B
// K-major from shared memory through its descriptor. Accumulates (scale-d = 1), or, in the second
// form, only if `accumulate` (else D = A * B).
#define SG_DEFINE_WGMMA_RS(Name, N, REGS, A0, A1, A2, A3, DESC_B, ACC)                                          \
  template <>                                                                                              \
  struct Name<N> {                                                                                         \
    static constexpr int kRegs = REGS;                                                                     \
    __device__ __forceinline__ static void mma(float (&d)[REGS], const uint32_t (&a)[4], uint64_t desc_b) { \
      asm volatile("wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.bf16.bf16 {" SG_WGMMA_D_##REGS          \
                   "}, {%" #A0 ", %" #A1 ", %" #A2 ", %" #A3 "}, %" #DESC_B ", 1, 1, 1, 0;\n"                \
                   : SG_WGMMA_OPS_##REGS                                                                   \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));                             \
    }                                                                                                      \
    /* The same with scale-d from `accumulate` (false: d = A * B, the previous d ignored). */              \
    __device__ __forceinline__ static void mma(float (&d)[REGS], const uint32_t (&a)[4], uint64_t desc_b,   \
                                               bool accumulate) {                                          \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #ACC ", 0;\n"                                       \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.bf16.bf16 {" SG_WGMMA_D_##REGS          \
                   "}, {%" #A0 ", %" #A1 ", %" #A2 ", %" #A3 "}, %" #DESC_B ", p, 1, 1, 0;\n}\n"            \
                   : SG_WGMMA_OPS_##REGS                                                                   \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(int(accumulate)));      \
    }                                                                                                      \
  };

template <int N>
struct WgmmaBf16Rs;
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 16, 8, 8, 9, 10, 11, 12, 13)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 24, 12, 12, 13, 14, 15, 16, 17)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 32, 16, 16, 17, 18, 19, 20, 21)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 40, 20, 20, 21, 22, 23, 24, 25)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 48, 24, 24, 25, 26, 27, 28, 29)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 56, 28, 28, 29, 30, 31, 32, 33)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 64, 32, 32, 33, 34, 35, 36, 37)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 96, 48, 48, 49, 50, 51, 52, 53)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 128, 64, 64, 65, 66, 67, 68, 69)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 160, 80, 80, 81, 82, 83, 84, 85)
SG_DEFINE_WGMMA_RS(WgmmaBf16Rs, 192, 96, 96, 97, 98, 99, 100, 101)

// ---- register arithmetic used by the dequantizing mainloops ---------------------------------

// Byte permute: byte i of the result is byte (selector nibble i) of {b:a} (a = bytes 0..3); a
// selector nibble with bit 3 set yields the sign of that byte replicated (0x00 for bytes < 0x80).
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(selector));
  return d;
}

// Correctly rounded bf16x2 product; bf16 arithmetic has no flush-to-zero, subnormals are kept.
__device__ __forceinline__ uint32_t mul_bf16x2(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("mul.rn.bf16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

// ---- registers, barriers, signals -----------------------------------------------------------

// Moves registers between warpgroups: the producer needs few, the MMA warpgroups many.
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs)); }
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs)); }

// 4-byte asynchronous copy global -> shared (LDGSTS); zero-filled when !valid. Its completion is
// tracked by cp.async groups, not by the register scoreboards that ordinary loads share with
// ld.shared (a global load in flight would hold up every shared load waiting on the same one).
// Copies 4 bytes, of which the first `src_bytes` (0..4) are read and the rest zero-filled.
__device__ __forceinline__ void cp_async_4_partial(uint32_t smem_addr, const void* gmem, uint32_t src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr), "l"(gmem), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_4(uint32_t smem_addr, const void* gmem, bool valid) {
  cp_async_4_partial(smem_addr, gmem, valid ? 4u : 0u);
}
// The same under a predicate: no copy at all where `copy` is false (a zero-filling copy would
// still write its destination).
__device__ __forceinline__ void cp_async_4_partial_if(uint32_t smem_addr, const void* gmem, uint32_t src_bytes,
                                                      bool copy) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %3, 0;\n@p cp.async.ca.shared.global [%0], [%1], 4, %2;\n}\n" ::"r"(smem_addr),
      "l"(gmem), "r"(src_bytes), "r"(int(copy))
      : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
template <int kPending>  // all but the kPending most recent groups complete
__device__ __forceinline__ void cp_async_wait_group() { asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory"); }
__device__ __forceinline__ uint32_t ld_shared_u32(uint32_t smem_addr) {
  uint32_t value;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(value) : "r"(smem_addr) : "memory");
  return value;
}

__device__ __forceinline__ void st_shared_b16(uint32_t smem_addr, uint16_t bits) {
  asm volatile("st.shared.b16 [%0], %1;\n" ::"r"(smem_addr), "h"(bits) : "memory");
}

// Two floats rounded to bf16 (one cvt.rn.bf16x2.f32): `lo` in the low half.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// C's two 16-bit element types (OutputType bf16, fp16), each rounded to nearest even from fp32 in
// one cvt; a pair packs `lo` in the low half.
__device__ __forceinline__ uint32_t pack_output_pair(float lo, float hi, bool fp16) {
  if (fp16) {
    const __half2 pair = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&pair);
  }
  return pack_bf16x2(lo, hi);
}
__device__ __forceinline__ uint16_t output_bits(float value, bool fp16) {
  return fp16 ? __half_as_ushort(__float2half_rn(value)) : __bfloat16_as_ushort(__float2bfloat16_rn(value));
}

// Four 8x8 b16 matrices, each held as an MMA fragment (lane l: row l / 4, columns 2 (l % 4) and
// +1 in one register), stored transposed: row c of matrix i (8 contiguous b16, 16-byte aligned)
// goes to the address lane 8 i + c gives.
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t smem_row_addr, uint32_t r0, uint32_t r1, uint32_t r2,
                                                  uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_row_addr),
               "r"(r0), "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}

// The same without the transpose: row r of matrix i (the fragment's row r) goes to the address
// lane 8 i + r gives.
__device__ __forceinline__ void stmatrix_x4(uint32_t smem_row_addr, uint32_t r0, uint32_t r1, uint32_t r2,
                                            uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_row_addr), "r"(r0),
               "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}

// A shared load kept in program order (volatile): the promotion's token-scale loads then stay next
// to their FMAs instead of all being hoisted at once, which cost the 128x256 tile 64 registers.
__device__ __forceinline__ float2 ld_shared_f32x2_in_order(const float* smem_ptr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n"
               : "=f"(v.x), "=f"(v.y)
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem_ptr))));
  return v;
}

__device__ __forceinline__ void st_shared_f32(float* smem_ptr, float value) {
  asm volatile("st.shared.f32 [%0], %1;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem_ptr))), "f"(value)
               : "memory");
}

// A scalar shared load kept in program order (volatile): after the barrier wait that publishes it.
__device__ __forceinline__ float ld_shared_f32_in_order(const float* smem_ptr) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem_ptr))));
  return v;
}

// Promotion of per-128-K partial accumulators (fp32): acc[s] += partial[s] * sfa[token] for
// kSlices accumulator sets over the same tokens, the first kTokens of them. wgmma m64nN layout:
// register 4j + i of a thread holds token 8j + 2 (lane % 4) + i % 2, so each token-scale pair is
// loaded once for every slice. `block_sfa`: the block's per-token scales in shared memory.
template <int kTokens, int kSlices, int kRegs>
__device__ __forceinline__ void promote_partials(float (&acc)[kSlices][kRegs], float (&partial)[kSlices][kRegs],
                                                 const float* block_sfa, int lane) {
  const float* thread_sfa = block_sfa + 2 * (lane % 4);
#pragma unroll
  for (int j = 0; j < kTokens / 8; ++j) {
    const float2 scale = ld_shared_f32x2_in_order(thread_sfa + 8 * j);
#pragma unroll
    for (int s = 0; s < kSlices; ++s) {
      acc[s][4 * j + 0] = fmaf(partial[s][4 * j + 0], scale.x, acc[s][4 * j + 0]);
      acc[s][4 * j + 1] = fmaf(partial[s][4 * j + 1], scale.y, acc[s][4 * j + 1]);
      acc[s][4 * j + 2] = fmaf(partial[s][4 * j + 2], scale.x, acc[s][4 * j + 2]);
      acc[s][4 * j + 3] = fmaf(partial[s][4 * j + 3], scale.y, acc[s][4 * j + 3]);
    }
  }
}

// The same value read from lane 0: to the compiler it is then the same across the warp, so what
// derives from it (an MMA warpgroup's shared-memory descriptors) can live in uniform registers,
// instead of being computed per thread and moved over (R2UR) before every wgmma (a warpgroup index
// derived from threadIdx looks per-thread to it). Measured per mainloop: the fp8 one gains 4-7% at
// E = 8; the bf16 one does not (H100, 2026-11-27), so only the fp8_block128 mainloops use it.
__device__ __forceinline__ int warp_uniform(int value) { return __shfl_sync(0xffffffffu, value, 0); }

// Barrier among a subset of the CTA's warps (id 0 is __syncthreads).
__device__ __forceinline__ void named_barrier_sync(int id, int num_threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(num_threads) : "memory");
}

// Arrives at a named barrier without waiting (the other side syncs on it).
__device__ __forceinline__ void named_barrier_arrive(int id, int num_threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(num_threads) : "memory");
}

// Arrive on the mbarrier at this CTA's `local_barrier` offset in cluster CTA `cta_rank` (itself or
// a peer). CUDA 13's cuda::ptx spells the shared::cluster form only with .release.cluster, which
// compiles to a GPU-wide MEMBAR; callers that order no writes before the arrive use .cta instead.
__device__ __forceinline__ void mbarrier_arrive_cluster_cta_scope(uint64_t* local_barrier, uint32_t cta_rank) {
  const uint32_t local = static_cast<uint32_t>(__cvta_generic_to_shared(local_barrier));
  asm volatile(
      "{\n.reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.release.cta.shared::cluster.b64 _, [remote];\n}\n" ::"r"(local),
      "r"(cta_rank)
      : "memory");
}

// Publishes a signal: a release add, so every write ordered before it (by program order or, through
// the preceding barrier, by the other storing threads) is visible to whoever acquires the counter.
__device__ __forceinline__ void red_release_gpu_add(uint32_t* counter, uint32_t value) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;\n" ::"l"(counter), "r"(value) : "memory");
}

// Fence + relaxed add: with the fence before it, a release pattern (PTX memory model), so one
// fence can publish several counters (the signaler, epilogue_signal.cuh).
__device__ __forceinline__ void fence_acq_rel_sys() { asm volatile("fence.acq_rel.sys;\n" ::: "memory"); }
__device__ __forceinline__ void red_relaxed_sys_add(uint32_t* counter, uint32_t value) {
  asm volatile("red.relaxed.sys.global.add.u32 [%0], %1;\n" ::"l"(counter), "r"(value) : "memory");
}

// A count in shared memory handed between two warps of one CTA: atomics with release / acquire at
// CTA scope (compute-sanitizer's racecheck follows atomics, not plain release/acquire accesses).
__device__ __forceinline__ void red_release_cta_shared_add(uint32_t* address, uint32_t value) {
  asm volatile("red.release.cta.shared::cta.add.u32 [%0], %1;\n" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(address))),
               "r"(value)
               : "memory");
}
__device__ __forceinline__ void atom_release_cta_shared_store(uint32_t* address, uint32_t value) {
  asm volatile("atom.release.cta.shared::cta.exch.b32 _, [%0], %1;\n" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(address))),
               "r"(value)
               : "memory");
}
__device__ __forceinline__ uint32_t atom_acquire_cta_shared_load(uint32_t* address) {
  uint32_t value;
  asm volatile("atom.acquire.cta.shared::cta.add.u32 %0, [%1], 0;\n"
               : "=r"(value)
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(address)))
               : "memory");
  return value;
}

}  // namespace signalgemm::kernels::ptx
