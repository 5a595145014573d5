// Links the installed multi-GPU combine (signalgemm::signalgemm_ep, with NCCL found by the package).
#include <cstdio>

#include <signalgemm/ep_combine.h>

int main() {
  std::printf("the multi-GPU combine's workspace for 8 counters: %zu bytes\n",
              signalgemm::ep_combine_workspace_bytes(8));
  return 0;
}
