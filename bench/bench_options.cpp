#include "bench_options.h"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "cli.h"

namespace signalgemm::bench {

namespace {

constexpr const char* kUsage =
    "usage: signalgemm-bench [options]\n"
    "  --shapes E:m:N:K,...     experts, mean rows per expert, N, K (default: the eight SPEC 6 shapes)\n"
    "  --format F | FA:FB       operand formats (bf16, fp8_block128, nvfp4, mxfp4, mxfp8); default fp8_block128\n"
    "  --out T                  output type: bf16 | fp16 (default bf16; the cuBLASLt baseline writes bf16)\n"
    "  --signals G              none | per_expert | per_row_block (default per_expert)\n"
    "  --compare-signals        also time signals off, interleaved with on, and print on/off\n"
    "  --sm-count N             SMs the GEMM may use (default all)\n"
    "  --block-m N --block-n N --stages N   tile overrides (default: the library's heuristic)\n"
    "  --cluster N              CTAs per cluster, 1 or 2 (default: the library's heuristic)\n"
    "  --iters N                timed runs per variant, median reported (default 50)\n"
    "  --warmup N               untimed runs per variant first (default 5)\n"
    "  --seed N                 routing and input seed (default 1)\n"
    "  --spread S               masked_m[e] = round(m * U(1 - S, 1 + S)), S in [0, 1) (default 0.3, SPEC 6;\n"
    "                           0: every expert exactly m rows)\n"
    "  --max-m N                rows per expert slab of A and C, >= every masked_m (default: the largest\n"
    "                           masked_m rounded up to 16)\n"
    "  --no-hint                expected_m = 0 (default m): the heuristic plans for max_m, as for a caller\n"
    "                           that gives no hint\n"
    "  --csv FILE               also write every row to FILE\n"
    "  --no-cublas              skip the cuBLASLt baseline\n"
    "  --no-workspace           no workspace: activations converted per tile (nvfp4, mxfp4, mxfp8 on both\n"
    "                           sides, fp8_block128 x FP4; default: converted once into it, timed with the GEMM),\n"
    "                           fp8_block128 x fp8_block128 tiles walked in a fixed order, and no split of K\n"
    "                           for launches with few tiles\n"
    "  --mma-fragments          FP4 weights packed once, untimed (pack_mma_fragments), and read in that layout\n"
    "exit status: 0; 1 where the library refused a shape (its row's note says why); 2 for a bad option\n";

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr, "signalgemm-bench: %s\n%s", why.c_str(), kUsage);
  std::exit(2);
}

// Whole-string integer parse: "12x", "" or one past int's range is an error, not 12, 0 or a wrapped value.
long parse_int(const std::string& text, const std::string& option, long min_value) {
  long v = 0;
  if (!bench::parse_int(text.c_str(), LONG_MIN, INT_MAX, v))
    usage_error(option + ": not an integer (at most 2^31 - 1): '" + text + "'");
  if (v < min_value) usage_error(option + " must be >= " + std::to_string(min_value) + ", got " + text);
  return v;
}

std::vector<Shape> parse_shapes(const std::string& list) {
  std::vector<Shape> shapes;
  std::stringstream items(list);
  std::string item;
  while (std::getline(items, item, ',')) {
    std::stringstream fields(item);
    std::string field;
    std::vector<int> v;
    while (std::getline(fields, field, ':')) v.push_back(int(parse_int(field, "--shapes " + item, 1)));
    if (v.size() != 4) usage_error("--shapes entry '" + item + "' is not E:m:N:K");
    // m * 1.3 (the spread's largest draw) and max_m's round-up stay within int.
    if (v[1] > (1 << 24)) usage_error("--shapes entry '" + item + "': m must be at most 16777216");
    shapes.push_back({v[0], v[1], v[2], v[3]});
  }
  if (shapes.empty()) usage_error("--shapes is empty");
  return shapes;
}

double parse_spread(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v >= 0 && v < 1))
    usage_error("--spread must be a number in [0, 1), got '" + text + "'");
  return v;
}

Format parse_format(const std::string& name) {
  for (Format f : {Format::bf16, Format::fp8_block128, Format::nvfp4, Format::mxfp4, Format::mxfp8})
    if (name == to_string(f)) return f;
  usage_error("unknown format '" + name + "'");
}

SignalGranularity parse_granularity(const std::string& name) {
  for (SignalGranularity g :
       {SignalGranularity::none, SignalGranularity::per_expert, SignalGranularity::per_row_block})
    if (name == to_string(g)) return g;
  usage_error("unknown --signals '" + name + "'");
}

}  // namespace

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string option = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("missing value for " + option);
      return argv[++i];
    };
    if (option == "--help" || option == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (option == "--shapes") {
      o.shapes = parse_shapes(value());
    } else if (option == "--format") {
      const std::string v = value();
      const size_t colon = v.find(':');
      o.a_format = parse_format(v.substr(0, colon));
      o.b_format = colon == std::string::npos ? o.a_format : parse_format(v.substr(colon + 1));
    } else if (option == "--out") {
      const std::string v = value();
      if (v != "bf16" && v != "fp16") usage_error("--out must be bf16 or fp16, got '" + v + "'");
      o.out_type = v == "fp16" ? OutputType::fp16 : OutputType::bf16;
    } else if (option == "--signals") {
      o.signals = parse_granularity(value());
    } else if (option == "--compare-signals") {
      o.compare_signals = true;
    } else if (option == "--no-workspace") {
      o.workspace = false;
    } else if (option == "--mma-fragments") {
      o.mma_fragments = true;
    } else if (option == "--no-cublas") {
      o.cublas = false;
    } else if (option == "--sm-count") {
      o.sm_count = int(parse_int(value(), option, 1));
    } else if (option == "--block-m") {
      o.config.block_m = int(parse_int(value(), option, 1));
    } else if (option == "--block-n") {
      o.config.block_n = int(parse_int(value(), option, 1));
    } else if (option == "--cluster") {
      o.config.cluster = int(parse_int(value(), option, 1));
    } else if (option == "--stages") {
      o.config.stages = int(parse_int(value(), option, 1));
    } else if (option == "--iters") {
      o.iters = int(parse_int(value(), option, 1));
    } else if (option == "--warmup") {
      o.warmup = int(parse_int(value(), option, 0));
    } else if (option == "--seed") {
      o.seed = uint32_t(parse_int(value(), option, 0));
    } else if (option == "--spread") {
      o.spread = parse_spread(value());
    } else if (option == "--max-m") {
      o.max_m = int(parse_int(value(), option, 1));
    } else if (option == "--no-hint") {
      o.hint = false;
    } else if (option == "--csv") {
      o.csv = value();
    } else {
      usage_error("unknown option " + option);
    }
  }
  if (o.mma_fragments && o.b_format != Format::nvfp4 && o.b_format != Format::mxfp4)
    usage_error("--mma-fragments packs FP4 weights: --format must name nvfp4 or mxfp4 weights");
  return o;
}

}  // namespace signalgemm::bench
