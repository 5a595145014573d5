// The multi-GPU combine (include/signalgemm/ep_combine.h): send phase driven by this rank's GEMM
// signals, storing rows into the owners' NCCL receive windows; deterministic reduce of the rows
// this rank's tokens received. Docs: docs/multigpu.md.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <nccl_device.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "consumer/combine_device.cuh"
#include "signalgemm/combine.h"
#include "signalgemm/consumer.cuh"
#include "signalgemm/ep_combine.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 28, 0)
#error "the multi-GPU combine needs NCCL 2.28 or newer (device API)"
#endif

namespace signalgemm {

// Receive window of one rank (the same layout on every rank: symmetric memory):
//   [0, 128)            header: uint32 reduced_epoch (the last epoch whose reduce finished here)
//   flags[2][slots]     uint32 per token slot: the epoch of the row last stored there
//   rows[2][slots][N]   bf16 rows, one per token slot (t * topk + k)
// [2]: halves by epoch parity.
struct EpCombineContext {
  ncclComm_t comm = nullptr;
  int rank = 0, num_ranks = 0, device = 0;
  EpCombineConfig config;
  void* window_memory = nullptr;
  size_t window_bytes = 0;
  ncclWindow_t window = nullptr;
  ncclDevComm dev_comm{};
  bool dev_comm_created = false;
  size_t flags_offset[2] = {}, rows_offset[2] = {};
};

namespace {

using detail::copy_row;
using detail::globaltimer;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kDefaultBlocks = 8;
constexpr int kMaxRanks = 64;
// 16-byte vectors per lane in flight in a row copy: the blocks beside the GEMM are few, so each
// must keep many bytes in flight (8 KB per warp) to move rows at NVLink rates.
constexpr int kRowVectorsInFlight = 16;
constexpr size_t kHeaderBytes = 128;
constexpr size_t kReducedEpochOffset = 0;

// Local workspace, zeroed before each combine: two work queues, the count of tokens reduced, and
// the throttle's link clock.
struct Workspace {
  uint32_t work_queues[2];
  uint32_t reduced_tokens;
  uint32_t pad;
  unsigned long long link_free_at;  // %globaltimer ns at which the modelled link is next idle
};

struct EpParams {
  const uint8_t* gemm_out;
  int64_t row_stride, expert_stride;  // bytes
  const int32_t* masked_m;
  SignalLayout layout;
  const uint32_t* signals;
  uint32_t signal_base;
  SignalScope scope;
  const int32_t* row_source;
  int slots_per_rank;
  int rank, num_ranks;
  int num_tokens, topk;
  const int32_t* topk_idx;
  const float* topk_weights;
  __nv_bfloat16* out;
  uint32_t epoch;
  ncclWindow_t window;
  size_t flags_offset, rows_offset;  // this epoch's half
  Workspace* workspace;
  float ns_per_byte;  // 0 = no throttle
  uint64_t timeout_ns;
  int32_t* error_flag;
  uint64_t* timeline;
  int first_block;
};

__device__ __forceinline__ void store_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// Token bucket shared by every block of this GPU: a row of `bytes` occupies the modelled link for
// bytes * ns_per_byte from max(now, the end of the previous transfer). Returns when the row would
// have arrived. A CAS loop: the reservation must read and move the link clock atomically.
__device__ uint64_t reserve_link(unsigned long long* link_free_at, uint64_t bytes, float ns_per_byte) {
  const unsigned long long duration = static_cast<unsigned long long>(bytes * ns_per_byte);
  const unsigned long long now = globaltimer();
  unsigned long long seen = *reinterpret_cast<volatile unsigned long long*>(link_free_at);
  while (true) {
    const unsigned long long done = (seen > now ? seen : now) + duration;
    const unsigned long long prev = atomicCAS(link_free_at, seen, done);
    if (prev == seen) return done;
    seen = prev;
  }
}

// One warp stores row `row` of local expert `e` into the slot of the token it serves, in the
// owner's window. Lane 0 returns, for the block's single release, where the slot's flag lives
// (null for a padding row) and, under the throttle, when the row would have arrived.
__device__ void send_row(const EpParams& p, int e, int row, int lane, volatile int* owner_ready, uint32_t** flag,
                         unsigned long long* arrival) {
  const int source = p.row_source[int64_t(e) * p.layout.max_m + row];
  if (source < 0) return;  // padding row
  const int owner = source / p.slots_per_rank, slot = source % p.slots_per_rank;
  const size_t row_bytes = size_t(p.layout.n) * sizeof(__nv_bfloat16);
  if (lane == 0) {
    // Before the first row to this owner: its reduce of epoch - 2 (same half) must be done, or
    // these stores could overwrite rows it has not summed. Acquire at system scope: the flag is
    // set by the owner's GPU after its reads.
    if (!owner_ready[owner]) {
      const auto* reduced = static_cast<const uint32_t*>(ncclGetPeerPointer(p.window, kReducedEpochOffset, owner));
      wait_signal(reduced, p.epoch - 2, SignalScope::sys, p.timeout_ns, p.error_flag);
      owner_ready[owner] = 1;
    }
    if (p.ns_per_byte > 0.f && owner != p.rank)
      *arrival = reserve_link(&p.workspace->link_free_at, row_bytes, p.ns_per_byte);
    *flag = static_cast<uint32_t*>(ncclGetPeerPointer(p.window, p.flags_offset + size_t(slot) * sizeof(uint32_t), owner));
  }
  __syncwarp();  // extends lane 0's acquire to the warp's stores below
  auto* dst = static_cast<__nv_bfloat16*>(ncclGetPeerPointer(p.window, p.rows_offset + size_t(slot) * row_bytes, owner));
  copy_row<kRowVectorsInFlight>(p.gemm_out + e * p.expert_stride + row * p.row_stride, dst, p.layout.n, lane);
}

__global__ void __launch_bounds__(kThreads) ep_combine_kernel(const EpParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = p.layout.n;
  const bool per_row_block = p.layout.granularity == SignalGranularity::per_row_block;
  const int counters_per_expert = per_row_block ? p.layout.row_blocks_per_expert() : 1;
  const int64_t num_counters = p.layout.counter_count();
  uint64_t* block_times = detail::start_block_timeline(p.timeline, num_counters, p.first_block);

  // owner_ready[o]: rank o has finished reducing epoch - 2, so this half of its window is free.
  __shared__ volatile int owner_ready[kMaxRanks];
  for (int o = threadIdx.x; o < p.num_ranks; o += kThreads) owner_ready[o] = 0;
  __syncthreads();

  // Per item: the flag each warp's row must set, and when it would have arrived (throttle).
  __shared__ uint32_t* item_flag[kWarps];
  __shared__ unsigned long long item_arrival[kWarps];

  // Work queues (detail::take_work_item): send items, then the owned tokens to reduce.
  uint32_t* const item_queue = &p.workspace->work_queues[0];
  uint32_t* const token_queue = &p.workspace->work_queues[1];

  // ---- send: this rank's counters in the GEMM's order, each split into items of one row per
  // warp, so that every block (not one per counter) sends as soon as a counter completes; each
  // row to its token's owner.
  const int rows_per_counter = per_row_block ? p.layout.block_m : p.layout.max_m;
  const int items_per_counter = (rows_per_counter + kWarps - 1) / kWarps;
  const int64_t num_items = num_counters * items_per_counter;
  for (int64_t item = detail::take_work_item(item_queue); item < num_items; item = detail::take_work_item(item_queue)) {
    const int64_t c = item / items_per_counter;
    const int chunk = int(item % items_per_counter);
    const int e = int(c / counters_per_expert);
    const int rb = int(c % counters_per_expert);
    const int m = p.masked_m[e];
    const uint32_t expected = p.layout.expected(m, rb);
    if (expected == 0) continue;  // no rows: never signalled
    const int rows = p.layout.covered_rows(m, rb);
    if (chunk * kWarps >= rows) continue;  // beyond masked_m: nothing to send
    if (!block_wait_signal(p.signals + c, p.signal_base + expected, p.scope, p.timeout_ns, p.error_flag)) continue;
    if (p.timeline != nullptr && threadIdx.x == 0 && chunk == 0) p.timeline[2 * c] = globaltimer();
    const int first_row = per_row_block ? rb * p.layout.block_m : 0;
    if (lane == 0) item_flag[warp] = nullptr, item_arrival[warp] = 0;
    if (const int r = chunk * kWarps + warp; r < rows)
      send_row(p, e, first_row + r, lane, owner_ready, &item_flag[warp], &item_arrival[warp]);
    // Publish the item's slots with one release at system scope (the readers are other GPUs):
    // the block barrier orders every warp's row stores before thread 0's fence, and the fence
    // before the flag stores makes each of them a release. One fence per item, not per row: a
    // system-scope fence waits for the NVLink stores to be acknowledged.
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned long long last_arrival = 0;
      for (int w = 0; w < kWarps; ++w) last_arrival = item_arrival[w] > last_arrival ? item_arrival[w] : last_arrival;
      while (globaltimer() < last_arrival) __nanosleep(64);
      asm volatile("fence.acq_rel.sys;" ::: "memory");
      for (int w = 0; w < kWarps; ++w)
        if (item_flag[w] != nullptr) asm volatile("st.relaxed.sys.global.u32 [%0], %1;" ::"l"(item_flag[w]), "r"(p.epoch) : "memory");
      if (p.timeline != nullptr)
        atomicMax(reinterpret_cast<unsigned long long*>(p.timeline + 2 * c + 1), (unsigned long long)globaltimer());
    }
  }
  if (block_times != nullptr && threadIdx.x == 0) block_times[1] = globaltimer();

  // ---- reduce: one block per token of this rank, once every used slot carries this epoch.
  const auto* local_flags = static_cast<const uint32_t*>(ncclGetLocalPointer(p.window, p.flags_offset));
  const auto* local_rows = static_cast<const __nv_bfloat16*>(ncclGetLocalPointer(p.window, p.rows_offset));
  uint32_t reduced_here = 0;
  for (int64_t t = detail::take_work_item(token_queue); t < p.num_tokens; t = detail::take_work_item(token_queue)) {
    // One thread per slot waits (acquire, system scope: the writer may be a peer GPU); the block
    // barrier then extends those acquires to every thread's loads of the rows.
    for (int k = threadIdx.x; k < p.topk; k += kThreads)
      if (p.topk_idx[t * p.topk + k] >= 0)
        wait_signal(local_flags + t * p.topk + k, p.epoch, SignalScope::sys, p.timeout_ns, p.error_flag);
    __syncthreads();
    detail::reduce_token(p.topk_idx + t * p.topk, p.topk_weights + t * p.topk, p.topk, n,
                         local_rows + t * p.topk * n, p.out + t * n);
    ++reduced_here;
  }
  // Announce the end of this epoch's reduce once every token is summed: the block barrier orders
  // the block's row loads before thread 0's acq_rel add; the block completing the count publishes
  // with a release at system scope, which senders of epoch + 2 acquire before reusing this half.
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t before;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], %2;"
                 : "=r"(before)
                 : "l"(&p.workspace->reduced_tokens), "r"(reduced_here)
                 : "memory");
    if (before + reduced_here == uint32_t(p.num_tokens))
      store_release_sys(static_cast<uint32_t*>(ncclGetLocalPointer(p.window, kReducedEpochOffset)), p.epoch);
  }
  if (block_times != nullptr) {
    __syncthreads();
    if (threadIdx.x == 0) block_times[2] = globaltimer();
  }
}

__global__ void ep_barrier_kernel(const ncclDevComm comm) {
  // acq_rel: each rank's earlier writes (to its own or peers' windows) are visible after the barrier.
  ncclLsaBarrierSession<ncclCoopCta> barrier{ncclCoopCta(), comm, ncclTeamLsa(comm), comm.lsaBarrier, 0};
  barrier.sync(ncclCoopCta(), cuda::memory_order_acq_rel);
}

Status invalid(const std::string& what) { return Status{StatusCode::invalid_argument, "signalgemm: " + what}; }

Status nccl_status(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return {};
  return Status{StatusCode::cuda_error, std::string("signalgemm: ") + what + ": " + ncclGetErrorString(r)};
}

Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  return Status{StatusCode::cuda_error, std::string("signalgemm: ") + what + ": " + cudaGetErrorString(e)};
}

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

}  // namespace

Status ep_combine_create(ncclComm_t comm, const EpCombineConfig& config, EpCombineContext** context) {
  if (context == nullptr) return invalid("context is null");
  *context = nullptr;
  if (comm == nullptr) return invalid("comm is null");
  if (config.max_tokens_per_rank < 1) return invalid("config.max_tokens_per_rank must be >= 1");
  if (config.topk < 1) return invalid("config.topk must be >= 1");
  if (config.n < 8 || config.n % 8 != 0) return invalid("config.n must be a positive multiple of 8");
  if (int64_t(config.max_tokens_per_rank) * config.topk > (int64_t(1) << 30))
    return invalid("config.max_tokens_per_rank * config.topk is too large for int32 row_source");
  // The device structures (ncclDevComm, requirements) change between NCCL minor versions.
  int version = 0;
  if (Status s = nccl_status(ncclGetVersion(&version), "ncclGetVersion"); !s.ok()) return s;
  if (version / 100 != NCCL_VERSION_CODE / 100)
    return Status{StatusCode::unsupported, "signalgemm: NCCL library " + std::to_string(version) +
                                               " differs from the headers built against (" +
                                               std::to_string(NCCL_VERSION_CODE) + ")"};

  auto* ctx = new EpCombineContext;
  ctx->comm = comm;
  ctx->config = config;
  int saved_device = 0;
  cudaGetDevice(&saved_device);
  Status status;
  auto fail = [&](Status s) {
    if (ctx->dev_comm_created) ncclDevCommDestroy(comm, &ctx->dev_comm);
    if (ctx->window != nullptr) ncclCommWindowDeregister(comm, ctx->window);
    if (ctx->window_memory != nullptr) ncclMemFree(ctx->window_memory);
    delete ctx;
    cudaSetDevice(saved_device);
    return s;
  };
  if (status = nccl_status(ncclCommCuDevice(comm, &ctx->device), "ncclCommCuDevice"); !status.ok()) return fail(status);
  if (status = nccl_status(ncclCommUserRank(comm, &ctx->rank), "ncclCommUserRank"); !status.ok()) return fail(status);
  if (status = nccl_status(ncclCommCount(comm, &ctx->num_ranks), "ncclCommCount"); !status.ok()) return fail(status);
  if (ctx->num_ranks > kMaxRanks)
    return fail(Status{StatusCode::unsupported, "signalgemm: more than 64 ranks in comm"});
  if (status = cuda_status(cudaSetDevice(ctx->device), "cudaSetDevice"); !status.ok()) return fail(status);

  const size_t slots = size_t(config.max_tokens_per_rank) * config.topk;
  const size_t flags_bytes = align_up(slots * sizeof(uint32_t), 256);
  const size_t rows_bytes = align_up(slots * config.n * sizeof(__nv_bfloat16), 256);
  ctx->flags_offset[0] = kHeaderBytes;
  ctx->flags_offset[1] = kHeaderBytes + flags_bytes;
  ctx->rows_offset[0] = align_up(kHeaderBytes + 2 * flags_bytes, 4096);
  ctx->rows_offset[1] = ctx->rows_offset[0] + rows_bytes;
  ctx->window_bytes = align_up(ctx->rows_offset[1] + rows_bytes, NCCL_WIN_REQUIRED_ALIGNMENT);

  // ncclMemAlloc: memory NCCL can map into every peer's address space (cuMem), as windows need.
  if (status = nccl_status(ncclMemAlloc(&ctx->window_memory, ctx->window_bytes), "ncclMemAlloc"); !status.ok())
    return fail(status);
  // Zero before registering: registration is collective, so no peer can store into this window
  // before the zeros are in place (flags start below every epoch).
  if (status = cuda_status(cudaMemset(ctx->window_memory, 0, ctx->window_bytes), "cudaMemset(window)"); !status.ok())
    return fail(status);
  if (status = cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); !status.ok()) return fail(status);
  if (status = nccl_status(ncclCommWindowRegister(comm, ctx->window_memory, ctx->window_bytes, &ctx->window,
                                                  NCCL_WIN_COLL_SYMMETRIC),
                           "ncclCommWindowRegister");
      !status.ok())
    return fail(status);
  ncclDevCommRequirements requirements;
  std::memset(&requirements, 0, sizeof(requirements));
  requirements.lsaBarrierCount = 1;  // ep_combine_barrier's single CTA
  if (status = nccl_status(ncclDevCommCreate(comm, &requirements, &ctx->dev_comm), "ncclDevCommCreate"); !status.ok())
    return fail(status);
  ctx->dev_comm_created = true;
  if (ctx->dev_comm.lsaSize != ctx->num_ranks)
    return fail(Status{StatusCode::unsupported,
                       "signalgemm: the multi-GPU combine needs every rank in one NVLink (LSA) domain; this comm has " +
                           std::to_string(ctx->num_ranks) + " ranks, " + std::to_string(ctx->dev_comm.lsaSize) +
                           " load/store accessible (across machines it needs GIN: docs/multigpu.md)"});
  cudaSetDevice(saved_device);
  *context = ctx;
  return {};
}

Status ep_combine_create_all(const ncclComm_t* comms, int count, const EpCombineConfig& config,
                             EpCombineContext** contexts) {
  if (comms == nullptr || contexts == nullptr) return invalid("comms and contexts must not be null");
  if (count < 1) return invalid("count must be >= 1");
  // Window registration and device-communicator creation are collective and block until every
  // rank has joined: one host thread per rank.
  std::vector<Status> statuses(count);
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i)
    threads.emplace_back([&, i] { statuses[i] = ep_combine_create(comms[i], config, &contexts[i]); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < count; ++i)
    if (!statuses[i].ok()) return statuses[i];
  return {};
}

Status ep_combine_destroy(EpCombineContext* ctx) {
  if (ctx == nullptr) return {};
  int saved_device = 0;
  cudaGetDevice(&saved_device);
  cudaSetDevice(ctx->device);
  Status status = cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  if (ctx->dev_comm_created) {
    Status s = nccl_status(ncclDevCommDestroy(ctx->comm, &ctx->dev_comm), "ncclDevCommDestroy");
    if (status.ok()) status = s;
  }
  if (ctx->window != nullptr) {
    Status s = nccl_status(ncclCommWindowDeregister(ctx->comm, ctx->window), "ncclCommWindowDeregister");
    if (status.ok()) status = s;
  }
  if (ctx->window_memory != nullptr) {
    Status s = nccl_status(ncclMemFree(ctx->window_memory), "ncclMemFree");
    if (status.ok()) status = s;
  }
  delete ctx;
  cudaSetDevice(saved_device);
  return status;
}

Status ep_combine_destroy_all(EpCombineContext* const* contexts, int count) {
  std::vector<Status> statuses(count);
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i) threads.emplace_back([&, i] { statuses[i] = ep_combine_destroy(contexts[i]); });
  for (auto& t : threads) t.join();
  for (const auto& s : statuses)
    if (!s.ok()) return s;
  return {};
}

int ep_combine_rank(const EpCombineContext* ctx) { return ctx->rank; }
int ep_combine_num_ranks(const EpCombineContext* ctx) { return ctx->num_ranks; }
int ep_combine_device(const EpCombineContext* ctx) { return ctx->device; }

size_t ep_combine_workspace_bytes() { return sizeof(Workspace); }

Status ep_combine_barrier(const EpCombineContext* ctx, cudaStream_t stream) {
  if (ctx == nullptr) return invalid("context is null");
  ep_barrier_kernel<<<1, 32, 0, stream>>>(ctx->dev_comm);
  return cuda_status(cudaGetLastError(), "ep_combine_barrier launch");
}

Status ep_combine(const EpCombineContext* ctx, const EpCombineArgs& a) {
  if (ctx == nullptr) return invalid("context is null");
  if (a.gemm_out == nullptr) return invalid("gemm_out is null");
  if (a.masked_m == nullptr) return invalid("masked_m is null");
  if (a.signals == nullptr || a.layout.granularity == SignalGranularity::none)
    return invalid("signals is null or layout.granularity is none: the combine is driven by the GEMM's signals");
  if (a.layout.num_experts < 1 || a.layout.max_m < 1 || a.layout.block_m < 1 || a.layout.block_n < 1)
    return invalid("layout is empty: pass signal_layout(gemm args)");
  if (a.layout.n != ctx->config.n) return invalid("layout.n differs from the context's config.n");
  if (a.row_source == nullptr) return invalid("row_source is null");
  if (a.num_tokens < 0 || a.num_tokens > ctx->config.max_tokens_per_rank)
    return invalid("num_tokens must be in [0, config.max_tokens_per_rank]");
  if (a.num_tokens > 0 && (a.topk_idx == nullptr || a.topk_weights == nullptr))
    return invalid("topk_idx and topk_weights are required");
  if (a.num_tokens > 0 && (a.out == nullptr || reinterpret_cast<uintptr_t>(a.out) % 16 != 0))
    return invalid("out is null or not 16-byte aligned");
  if (a.epoch == 0) return invalid("epoch must be >= 1 (the window starts zeroed)");
  if (a.workspace == nullptr || reinterpret_cast<uintptr_t>(a.workspace) % 16 != 0)
    return invalid("workspace is null or not 16-byte aligned");
  if (reinterpret_cast<uintptr_t>(a.gemm_out) % 16 != 0 || a.gemm_out_row_stride % 16 != 0 ||
      a.gemm_out_expert_stride % 16 != 0)
    return invalid("gemm_out and its strides must be 16-byte aligned");
  if (a.num_blocks < 0) return invalid("num_blocks must be >= 0");
  if (a.first_block < 0) return invalid("first_block must be >= 0");
  if (!(a.remote_bytes_per_second >= 0)) return invalid("remote_bytes_per_second must be >= 0");

  EpParams p{};
  p.gemm_out = static_cast<const uint8_t*>(a.gemm_out);
  p.row_stride = a.gemm_out_row_stride != 0 ? a.gemm_out_row_stride : int64_t(a.layout.n) * 2;
  p.expert_stride = a.gemm_out_expert_stride != 0 ? a.gemm_out_expert_stride : p.row_stride * a.layout.max_m;
  p.masked_m = a.masked_m;
  p.layout = a.layout;
  p.signals = a.signals;
  p.signal_base = a.signal_base;
  p.scope = a.scope;
  p.row_source = a.row_source;
  p.slots_per_rank = ctx->config.max_tokens_per_rank * ctx->config.topk;
  p.rank = ctx->rank;
  p.num_ranks = ctx->num_ranks;
  p.num_tokens = a.num_tokens;
  p.topk = ctx->config.topk;
  p.topk_idx = a.topk_idx;
  p.topk_weights = a.topk_weights;
  p.out = static_cast<__nv_bfloat16*>(a.out);
  p.epoch = a.epoch;
  p.window = ctx->window;
  p.flags_offset = ctx->flags_offset[a.epoch & 1];
  p.rows_offset = ctx->rows_offset[a.epoch & 1];
  p.workspace = static_cast<Workspace*>(a.workspace);
  p.ns_per_byte = a.remote_bytes_per_second > 0 ? float(1e9 / a.remote_bytes_per_second) : 0.f;
  p.timeout_ns = a.timeout_ns;
  p.error_flag = a.error_flag;
  p.timeline = a.timeline;
  p.first_block = a.first_block;

  const int blocks = a.num_blocks > 0 ? a.num_blocks : kDefaultBlocks;
  ep_combine_kernel<<<blocks, kThreads, 0, a.stream>>>(p);
  return cuda_status(cudaGetLastError(), "ep_combine launch");
}

}  // namespace signalgemm
