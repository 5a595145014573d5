// Command line of signalgemm-bench.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "signalgemm/gemm.h"

namespace signalgemm::bench {

struct Shape {
  int experts, m, n, k;  // m: mean rows per expert; masked_m[e] = m * U(1 - spread, 1 + spread)
};

struct Options {
  // SPEC §6: DeepSeek-V3 up (N=4096, K=7168) and down (N=7168, K=2048) GEMMs at decode (E=32,
  // m=32 and 128) and prefill-like (E=8, m=256 and 1024) sizes.
  std::vector<Shape> shapes = {{32, 32, 4096, 7168},  {32, 32, 7168, 2048},  {32, 128, 4096, 7168},
                               {32, 128, 7168, 2048}, {8, 256, 4096, 7168},  {8, 256, 7168, 2048},
                               {8, 1024, 4096, 7168}, {8, 1024, 7168, 2048}};
  Format a_format = Format::fp8_block128;
  Format b_format = Format::fp8_block128;
  OutputType out_type = OutputType::bf16;
  SignalGranularity signals = SignalGranularity::per_expert;
  bool compare_signals = false;  // also time signals off, interleaved with signals on
  bool cublas = true;
  bool workspace = true;  // GroupedGemmArgs::workspace: activations converted once (nvfp4², mxfp4², mxfp8²,
                          // fp8 x FP4), else the dynamic tile counter
  bool mma_fragments = false;  // FP4 weights packed once into OperandLayout::mma_fragments
  int sm_count = 0;  // 0 = all
  TileConfig config;  // zero fields = heuristic
  int iters = 50;
  int warmup = 5;
  uint32_t seed = 1;
  double spread = 0.3;  // masked_m[e] = m * U(1 - spread, 1 + spread) (SPEC §6: 0.3)
  int max_m = 0;        // rows per expert slab; 0 = the largest masked_m rounded up to 16
  bool hint = true;     // expected_m = m; false: 0, the heuristic plans for max_m (a caller without a hint)
  std::string csv;  // also write every row here when set
};

// Parses argv; prints usage and exits (0 for --help, 2 for a bad argument).
Options parse_options(int argc, char** argv);

}  // namespace signalgemm::bench
