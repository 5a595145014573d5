// Uses the installed package: validation and the signal contract work without a GPU.
#include <cstdio>

#include <signalgemm/gemm.h>

int main() {
  signalgemm::GroupedGemmArgs args;
  args.num_experts = 8;
  args.max_m = 64;
  args.n = 7168;
  args.k = 2048;
  const signalgemm::Status status = signalgemm::validate(args);  // a.data is still null
  std::printf("validate on an empty argument struct: %s\n", status.message.c_str());
  const signalgemm::SignalLayout layout{8, 64, 7168, 64, 128, signalgemm::SignalGranularity::per_expert};
  std::printf("an expert with 50 rows reaches %u on its per-expert counter\n", layout.expected(50));
  return status.code == signalgemm::StatusCode::invalid_argument ? 0 : 1;
}
