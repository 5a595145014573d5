// nanobind module `signalgemm._C`: the C++ API over DLPack tensors (torch, cupy, jax, numpy...).
// Shape and dtype checks that need the tensors happen here; everything else is the library's own
// validation, whose message (naming the argument) becomes a ValueError.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/config.h"
#include "host/devices.h"
#include "signalgemm/gemm.h"
#include "signalgemm/reference.h"

namespace nb = nanobind;
using namespace signalgemm;

namespace {

using Tensor = nb::ndarray<nb::device::cuda>;
// Counters and flags the kernel writes may also be pinned host memory (a torch tensor after
// pin_memory()), for a consumer on the host: the library checks that the memory is mapped.
using CounterTensor = nb::ndarray<>;

[[noreturn]] void bad(const std::string& message) { throw nb::value_error(("signalgemm: " + message).c_str()); }

// A library status as Python sees it: a bad argument a ValueError (the message names it), anything
// else a RuntimeError; ok returns.
void bad_status(const Status& s) {
  if (s.code == StatusCode::invalid_argument || s.code == StatusCode::unsupported) throw nb::value_error(s.message.c_str());
  if (!s.ok()) throw std::runtime_error(s.message);
}

void require_gpu_or_pinned(const CounterTensor& t, const char* name) {
  const int32_t type = t.device_type();
  if (type != nb::device::cuda::value && type != nb::device::cuda_host::value &&
      type != nb::device::cuda_managed::value && type != nb::device::cpu::value)
    bad(std::string(name) + " must be a CUDA tensor or pinned host memory");
  // A CPU tensor must be pinned here and now: the library lets unregistered memory pass while the
  // stream captures a graph (memory allocated in the capture), which a CPU tensor never is.
  if (type != nb::device::cpu::value) return;
  cudaPointerAttributes attributes{};
  const cudaError_t query = cudaPointerGetAttributes(&attributes, t.data());
  if (query != cudaSuccess) {
    cudaGetLastError();
    bad(std::string(name) + " is a CPU tensor, and CUDA could not say whether it is pinned: " +
        cudaGetErrorString(query));
  }
  if (attributes.type != cudaMemoryTypeHost)
    bad(std::string(name) + " is a CPU tensor in pageable memory: it must be a CUDA tensor or pinned host memory");
}

Format parse_format(const std::string& name, const char* argument) {
  for (Format f : {Format::bf16, Format::fp8_block128, Format::nvfp4, Format::mxfp4, Format::mxfp8})
    if (name == to_string(f)) return f;
  bad(std::string(argument) + ": unknown format '" + name + "' (bf16, fp8_block128, nvfp4, mxfp4, mxfp8)");
}

SignalGranularity parse_granularity(const std::string& name) {
  if (name == "none") return SignalGranularity::none;
  if (name == "per_expert") return SignalGranularity::per_expert;
  if (name == "per_row_block") return SignalGranularity::per_row_block;
  bad("granularity: unknown value '" + name + "' (none, per_expert, per_row_block)");
}

SignalScope parse_scope(const std::string& name) {
  if (name == "gpu") return SignalScope::gpu;
  if (name == "sys") return SignalScope::sys;
  bad("scope: unknown value '" + name + "' (gpu, sys)");
}

// Byte stride of dimension d of a DLPack tensor (DLPack strides count elements).
int64_t byte_stride(const Tensor& t, size_t d) { return t.stride(d) * int64_t(t.itemsize()); }

// Strides of dimensions of size 1 are not looked at anywhere: exporters set them freely (older torch
// exports 1, others the contiguous value), and no element is ever reached through them.
void require_dims(const Tensor& t, const char* name, size_t ndim) {
  if (t.ndim() != ndim) bad(std::string(name) + " must have " + std::to_string(ndim) + " dimensions");
  if (t.shape(ndim - 1) != 1 && t.stride(ndim - 1) != 1)
    bad(std::string(name) + " must be contiguous in its last dimension");
}

void require_dtype(const Tensor& t, const char* name, uint8_t code, int bits, const char* what) {
  if (t.dtype().code != code || t.dtype().bits != bits || t.dtype().lanes != 1)
    bad(std::string(name) + " must be " + what);
}

// What no framework exports but a hand-made DLPack capsule can: a negative extent (read back as a
// huge one, it would make a workspace look large enough), or no data behind a tensor with elements
// (an optional tensor would pass for one not given).
template <class AnyTensor>
void require_well_formed(const std::optional<AnyTensor>& t, const char* name) {
  if (!t) return;
  for (size_t d = 0; d < t->ndim(); ++d)
    if (int64_t(t->shape(d)) < 0) bad(std::string(name) + " has a negative extent in dimension " + std::to_string(d));
  if (t->data() == nullptr && t->size() > 0) bad(std::string(name) + " has elements but no data (a null pointer)");
}

// Row-major with no gaps (sizes of 1 aside): flat layouts (scales, the workspace, packed weights).
template <class AnyTensor>  // Tensor, or the ndarray of counters that may be pinned host memory
bool is_contiguous(const AnyTensor& t) {
  int64_t step = 1;
  for (size_t d = t.ndim(); d-- > 0;) {
    if (t.shape(d) != 1 && t.stride(d) != step) return false;
    step *= int64_t(t.shape(d));
  }
  return true;
}

void require_contiguous(const Tensor& t, const char* name) {
  if (!is_contiguous(t)) bad(std::string(name) + " must be contiguous");
}

// The byte stride of dimension d for the C++ API: 0 ("packed") where the dimension has one index, as
// exporters set such strides freely; a stride of 0 or below elsewhere (an expanded or flipped
// tensor) has no meaning there and is rejected.
int64_t stepped_byte_stride(const Tensor& t, size_t d, const char* name) {
  if (t.shape(d) <= 1) return 0;
  if (t.stride(d) <= 0)
    bad(std::string(name) + " has stride " + std::to_string(t.stride(d)) + " in dimension " + std::to_string(d) +
        "; expanded, broadcast or flipped tensors are not supported");
  return byte_stride(t, d);
}

// DLPack 1.1 type codes of the 8-bit floats torch exports (float8_e4m3fn, float8_e8m0fnu).
constexpr uint8_t kDLFloat8E4m3fn = 10, kDLFloat8E8m0fnu = 14;

bool is_byte(const nb::dlpack::dtype& d, std::initializer_list<uint8_t> float_codes = {}) {
  if (d.bits != 8 || d.lanes != 1) return false;
  if (d.code == uint8_t(nb::dlpack::dtype_code::Int) || d.code == uint8_t(nb::dlpack::dtype_code::UInt)) return true;
  for (uint8_t code : float_codes)
    if (d.code == code) return true;
  return false;
}

// int32 or uint32 (counters and flags the kernel adds to or ORs into).
bool is_int32(const nb::dlpack::dtype& d) {
  return d.bits == 32 && d.lanes == 1 &&
         (d.code == uint8_t(nb::dlpack::dtype_code::Int) || d.code == uint8_t(nb::dlpack::dtype_code::UInt));
}

// The dtypes that hold elements of `format`: its own (bfloat16, float8_e4m3fn) or raw bytes.
void require_element_dtype(const Tensor& t, Format format, const char* name) {
  const nb::dlpack::dtype d = t.dtype();
  if (format == Format::bf16) {
    if (d.code != uint8_t(nb::dlpack::dtype_code::Bfloat) || d.bits != 16 || d.lanes != 1)
      bad(std::string(name) + " must be bfloat16 for format bf16");
  } else if (element_bits(format) == 8) {
    if (!is_byte(d, {kDLFloat8E4m3fn}))
      bad(std::string(name) + " must be float8_e4m3fn, uint8 or int8 (e4m3 bytes) for format " + to_string(format));
  } else if (!is_byte(d)) {
    bad(std::string(name) + " must be uint8 or int8 (two e2m1 codes per byte) for format " + to_string(format));
  }
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t d = 0; d < shape.size(); ++d) text += (d ? ", " : "") + std::to_string(shape[d]);
  return text + "]";
}
std::string shape_string(const Tensor& t) {
  std::vector<int64_t> shape(t.ndim());
  for (size_t d = 0; d < t.ndim(); ++d) shape[d] = int64_t(t.shape(d));
  return shape_string(shape);
}

// Scale factors (when given and the format has them: validation reports the rest): their dtype, a
// flat contiguous layout, and at least the bytes of docs/formats.md (operand_scale_bytes).
void check_scales(const std::optional<Tensor>& scales, Format format, bool weights, int64_t experts, int64_t rows,
                  int64_t k, const char* name) {
  if (!scales || scale_block_k(format) == 0) return;
  const nb::dlpack::dtype d = scales->dtype();
  if (format == Format::fp8_block128) {
    if (d.code != uint8_t(nb::dlpack::dtype_code::Float) || d.bits != 32 || d.lanes != 1)
      bad(std::string(name) + " must be float32 for format fp8_block128");
  } else if (!is_byte(d, {format == Format::nvfp4 ? kDLFloat8E4m3fn : kDLFloat8E8m0fnu})) {
    bad(std::string(name) + " must be one byte per scale (uint8, int8 or " +
        (format == Format::nvfp4 ? "float8_e4m3fn" : "float8_e8m0fnu") + ") for format " + to_string(format));
  }
  // Flat scales need only the bytes; a shaped tensor must have the documented shape, so that a
  // natural-looking other layout (fp8_block128 sfa as [E, rows, K/128] row-major, FlashInfer's
  // swizzled scales without ab_dtype) is refused rather than misread, wherever its shape differs from
  // the documented one (docs/formats.md: equal sizes cannot tell them apart). fp8_block128 activation
  // scales may also come as DeepGEMM's MN-major view: logical [E, rows, K/128], the same memory.
  const int64_t blocks_k = k / scale_block_k(format);
  const std::vector<int64_t> shape =
      format != Format::fp8_block128 ? std::vector<int64_t>{experts, rows, blocks_k}
      : weights                      ? std::vector<int64_t>{experts, (rows + 127) / 128, blocks_k}
                                     : std::vector<int64_t>{experts, blocks_k, (rows + 3) / 4 * 4};
  auto has_shape = [&](const std::vector<int64_t>& want) {
    if (scales->ndim() != want.size()) return false;
    for (size_t d = 0; d < want.size(); ++d)
      if (int64_t(scales->shape(d)) != want[d]) return false;
    return true;
  };
  // (DeepGEMM's view keeps the rows padded to 4 in its strides: the documented layout's memory.)
  const int64_t padded_rows = (rows + 3) / 4 * 4;
  const bool mn_major_view = format == Format::fp8_block128 && !weights && has_shape({experts, rows, blocks_k}) &&
                             (rows == 1 || scales->stride(1) == 1) &&
                             (blocks_k == 1 || scales->stride(2) == padded_rows) &&
                             (experts == 1 || scales->stride(0) == padded_rows * blocks_k);
  if (scales->ndim() != 1 && !has_shape(shape) && !mn_major_view)
    bad(std::string(name) + " has shape " + shape_string(*scales) + "; " + to_string(format) + " scales of [" +
        std::to_string(experts) + ", " + std::to_string(rows) + ", " + std::to_string(k) +
        "] are flat or " + shape_string(shape) +
        (format == Format::fp8_block128 && !weights ? " (or DeepGEMM's MN-major view [E, rows, K/128])" : "") +
        " (docs/formats.md)" +
        (scales->ndim() == 6 ? "; FlashInfer's swizzled scales need ab_dtype, sf_dtype and sf_vec_size" : ""));
  if (mn_major_view) return;  // its strides cover exactly the documented layout's bytes
  require_contiguous(*scales, name);
  const size_t needed = operand_scale_bytes(format, weights, int(experts), int(rows), int(k));
  if (scales->nbytes() < needed)
    bad(std::string(name) + " holds " + std::to_string(scales->nbytes()) + " bytes; " + to_string(format) +
        " scales of [" + std::to_string(experts) + ", " + std::to_string(rows) + ", " + std::to_string(k) +
        "] take " + std::to_string(needed) + " (docs/formats.md)");
}

// An extent the C++ API takes as int.
int extent(size_t value, const char* name) {
  if (value > size_t(std::numeric_limits<int32_t>::max()))
    bad(std::string(name) + " = " + std::to_string(value) + " is too large (at most 2^31 - 1)");
  return int(value);
}

// Sizes a planning helper answers for: those a launch would accept (validate_sizes), else ValueError.
// `unknown_n`: the helper takes n = 0 as not known (the workspace sizes), so only a given n is checked.
void require_valid_sizes(GroupedGemmArgs args, bool unknown_n = false) {
  if (unknown_n && args.n == 0) args.n = 8;
  const Status s = validate_sizes(args);
  if (!s.ok()) throw nb::value_error(s.message.c_str());
}

// Elements of a K-major operand's last dimension per logical K element (FP4 packs two per byte).
int64_t logical_k(Format f, int64_t last_dim) { return element_bits(f) == 4 ? last_dim * 2 : last_dim; }

OperandArgs operand(const Tensor& data, const std::optional<Tensor>& scales, Format format, const char* name) {
  require_dims(data, name, 3);
  require_element_dtype(data, format, name);
  OperandArgs op;
  op.format = format;
  op.data = data.data();
  op.scales = scales ? scales->data() : nullptr;
  op.row_stride = stepped_byte_stride(data, 1, name);
  op.expert_stride = stepped_byte_stride(data, 0, name);
  return op;
}

// FP4 weights and scales packed by pack_mma_fragments: uint8 [E, ceil(N/64), ceil(K/64), 2560], contiguous.
OperandArgs fragment_operand(const Tensor& data, const std::optional<Tensor>& scales, Format format, int n, int k) {
  if (format != Format::nvfp4 && format != Format::mxfp4)
    bad("b: packed mma_fragments weights are nvfp4 or mxfp4; b_format is " + std::string(to_string(format)));
  const bool shaped = data.ndim() == 4 && data.itemsize() == 1 && data.shape(1) == size_t((n + 63) / 64) &&
                      data.shape(2) == size_t((k + 63) / 64) && data.shape(3) == 2560;
  if (!shaped || !is_contiguous(data))
    bad("b: packed mma_fragments weights must be a contiguous uint8 [E, ceil(N/64), ceil(K/64), 2560] tensor "
        "(pack_mma_fragments) for N = " + std::to_string(n) + ", K = " + std::to_string(k));
  OperandArgs op;
  op.format = format;
  op.data = data.data();
  op.scales = scales ? scales->data() : nullptr;
  op.layout = OperandLayout::mma_fragments;
  return op;
}

// b_n > 0: b holds packed mma_fragments weights of N = b_n rows (rows layout otherwise).
void grouped_gemm(Tensor a, std::optional<Tensor> sfa, Tensor b, std::optional<Tensor> sfb, Tensor out,
                  Tensor masked_m, const std::string& a_format, const std::string& b_format,
                  std::optional<Tensor> alpha, std::optional<CounterTensor> signals, const std::string& granularity,
                  const std::string& scope, int sm_count, int expected_m, int block_m, int block_n, int stages,
                  int cluster, uintptr_t stream, std::optional<CounterTensor> error_flag, std::optional<Tensor> workspace,
                  int b_n, bool load_only, const std::string& c_dtype) {
  for (const auto& [t, name] : {std::pair{std::optional(a), "a"}, {sfa, "sfa"}, {std::optional(b), "b"}, {sfb, "sfb"},
                                {std::optional(out), "out"}, {std::optional(masked_m), "masked_m"}, {alpha, "alpha"},
                                {workspace, "workspace"}})
    require_well_formed(t, name);
  require_well_formed(signals, "signals");
  require_well_formed(error_flag, "error_flag");
  GroupedGemmArgs args;
  args.a = operand(a, sfa, parse_format(a_format, "a_format"), "a");
  const bool fragments = b_n > 0;
  args.b = fragments ? fragment_operand(b, sfb, parse_format(b_format, "b_format"), b_n,
                                        int(logical_k(args.a.format, a.shape(2))))
                      : operand(b, sfb, parse_format(b_format, "b_format"), "b");
  require_dims(out, "out", 3);
  const nb::dlpack::dtype out_dtype = out.dtype();
  const bool out_bf16 = out_dtype.code == uint8_t(nb::dlpack::dtype_code::Bfloat) && out_dtype.bits == 16;
  const bool out_fp16 = out_dtype.code == uint8_t(nb::dlpack::dtype_code::Float) && out_dtype.bits == 16;
  if (!(out_bf16 || out_fp16) || out_dtype.lanes != 1) bad("out must be bfloat16 or float16");
  const char* out_name = out_fp16 ? "float16" : "bfloat16";
  if (!c_dtype.empty() && c_dtype != out_name) bad("c_dtype = '" + c_dtype + "' but out is " + out_name);
  args.out_type = out_fp16 ? OutputType::fp16 : OutputType::bf16;
  require_dims(masked_m, "masked_m", 1);
  require_dtype(masked_m, "masked_m", uint8_t(nb::dlpack::dtype_code::Int), 32, "int32");
  args.num_experts = extent(a.shape(0), "a.shape[0] (experts)");
  args.max_m = extent(a.shape(1), "a.shape[1] (max_m)");
  args.k = extent(logical_k(args.a.format, a.shape(2)), "K");
  args.n = fragments ? b_n : extent(b.shape(1), "b.shape[1] (N)");
  if (b.shape(0) != a.shape(0) || out.shape(0) != a.shape(0) || masked_m.shape(0) != a.shape(0))
    bad("a, b, out and masked_m must have the same number of experts (dimension 0)");
  if (!fragments && logical_k(args.b.format, b.shape(2)) != args.k) bad("a and b must have the same K");
  if (out.shape(1) != a.shape(1) || out.shape(2) != size_t(args.n)) bad("out must be [E, max_m, N]");
  check_scales(sfa, args.a.format, /*weights=*/false, a.shape(0), a.shape(1), args.k, "sfa");
  check_scales(sfb, args.b.format, /*weights=*/true, a.shape(0), args.n, args.k, "sfb");
  args.out = out.data();
  args.out_row_stride = stepped_byte_stride(out, 1, "out");
  args.out_expert_stride = stepped_byte_stride(out, 0, "out");
  args.masked_m = static_cast<const int32_t*>(masked_m.data());
  if (alpha) {
    require_dtype(*alpha, "alpha", uint8_t(nb::dlpack::dtype_code::Float), 32, "float32");
    // Any shape of E elements: FlashInfer reads alpha by pointer, SGLang passes it as (1, 1, E).
    if (alpha->size() != a.shape(0)) bad("alpha must be a contiguous float32 of E elements ([E], or e.g. (1, 1, E))");
    require_contiguous(*alpha, "alpha");
    args.alpha = static_cast<const float*>(alpha->data());
  }
  args.granularity = parse_granularity(granularity);  // named even without signals
  if (!signals) args.granularity = SignalGranularity::none;
  args.scope = parse_scope(scope);
  args.sm_count = sm_count;
  args.expected_m = expected_m;
  args.config = TileConfig{block_m, block_n, stages, cluster};
  args.stream = reinterpret_cast<cudaStream_t>(stream);
  // On the output's device, as torch's operators run, whatever the current one (restored after);
  // the library rejects operands on any other device. Before the signals' count, which plans the
  // tile for the current device, and the counters' pinned-memory query.
  const host::ScopedDevice on_out_device(out.device_id());
  // Before the signals' count: the workspace can choose the tile, hence the counters.
  if (workspace) {
    require_contiguous(*workspace, "workspace");
    args.workspace = workspace->data();
    args.workspace_bytes = workspace->nbytes();
  }
  if (signals) {
    bad_status(validate_sizes(args));  // the count below plans the tile: a refused one is named as such first
    require_gpu_or_pinned(*signals, "signals");
    if (signals->ndim() != 1 || !is_int32(signals->dtype()) || !is_contiguous(*signals))
      bad("signals must be a contiguous 1-D int32/uint32 tensor");
    const int64_t needed = signal_layout(args).counter_count();
    if (int64_t(signals->shape(0)) < needed)
      bad("signals has " + std::to_string(signals->shape(0)) + " counters, needs " + std::to_string(needed));
    args.signals = static_cast<uint32_t*>(signals->data());
  }
  if (error_flag) {
    require_gpu_or_pinned(*error_flag, "error_flag");
    if (!is_int32(error_flag->dtype()) || error_flag->size() < 1) bad("error_flag must be an int32 tensor");
    args.error_flag = static_cast<int32_t*>(error_flag->data());
  }
  bad_status(load_only ? load_kernels(args) : grouped_gemm_nt_masked(args));
}

// FP4 weights b (nvfp4 or mxfp4 bytes, uint8 [E, N, K/2], any strides) and their block scales (contiguous bytes
// [E, N, K / block], format `format`) -> `packed` (contiguous uint8, at least mma_fragment_bytes), on `stream`.
void pack_fragments(Tensor b, Tensor scales, const std::string& format, Tensor packed, uintptr_t stream) {
  require_dims(b, "b", 3);
  if (b.itemsize() != 1) bad("b must be uint8 (packed nvfp4 bytes)");
  const int experts = extent(b.shape(0), "b.shape[0]"), n = extent(b.shape(1), "b.shape[1]"),
            k = extent(b.shape(2) * 2, "K");
  require_contiguous(packed, "packed");
  if (packed.itemsize() != 1 || int64_t(packed.nbytes()) < int64_t(mma_fragment_bytes(experts, n, k)))
    bad("packed must be uint8 with at least mma_fragment_bytes(E, N, K) = " +
        std::to_string(mma_fragment_bytes(experts, n, k)) + " bytes");
  require_contiguous(scales, "sfb");
  OperandArgs weights;
  weights.format = parse_format(format, "b_format");
  if (weights.format != Format::nvfp4 && weights.format != Format::mxfp4)
    bad("b_format must be nvfp4 or mxfp4, got " + format);
  if (scales.itemsize() != 1 || int64_t(scales.nbytes()) != int64_t(experts) * n * (k / scale_block_k(weights.format)))
    bad("sfb must hold the " + format + " block scales of b: " +
        std::to_string(int64_t(experts) * n * (k / scale_block_k(weights.format))) + " bytes");
  weights.data = b.data();
  weights.scales = scales.data();
  weights.row_stride = stepped_byte_stride(b, 1, "b");
  weights.expert_stride = stepped_byte_stride(b, 0, "b");
  const host::ScopedDevice on_packed_device(packed.device_id());
  const Status s =
      pack_mma_fragments(weights, experts, n, k, packed.data(), reinterpret_cast<cudaStream_t>(stream));
  if (s.code == StatusCode::invalid_argument) throw nb::value_error(s.message.c_str());
  if (!s.ok()) throw std::runtime_error(s.message);
}

nb::dict layout_dict(const SignalLayout& l) {
  nb::dict d;
  d["num_experts"] = l.num_experts;
  d["max_m"] = l.max_m;
  d["n"] = l.n;
  d["block_m"] = l.block_m;
  d["block_n"] = l.block_n;
  d["counter_count"] = l.counter_count();
  d["granularity"] = std::string(to_string(l.granularity));
  return d;
}

// The tile shape a launch would use, from the sizes alone (no tensors needed).
// The tile (hence the counters) depends on the formats, and for the pairings that convert their
// activations in a workspace on whether one is used: the launch then runs as bf16 activations.
nb::dict signal_layout_for(int num_experts, int max_m, int n, int expected_m, int block_m, int block_n,
                           const std::string& granularity, const std::string& a_format, const std::string& b_format,
                           int k, bool workspace, int stages, int cluster, bool mma_fragments) {
  GroupedGemmArgs args;
  args.num_experts = num_experts, args.max_m = max_m, args.n = n, args.k = k;
  args.a.format = parse_format(a_format, "a_format");
  args.b.format = parse_format(b_format, "b_format");
  args.expected_m = expected_m;
  args.config = TileConfig{block_m, block_n, stages, cluster};  // a tile given on one side completes to fit stages
  args.granularity = parse_granularity(granularity);
  GroupedGemmArgs probe = args;  // whether the pairing converts does not depend on K
  probe.k = 64;
  // One-format pairings then run as bf16 activations; fp8_block128 tokens keep their pairing's tiles.
  if (workspace && args.a.format == args.b.format && activation_workspace_bytes(probe) > 0)
    args.a.format = Format::bf16;
  // Packed FP4 weights have kernels of their own tiles (a tile fixed on one side only is completed
  // with one of them); fp8_block128 tokens reach those through the workspace, planned as given.
  if (mma_fragments) args.b.layout = OperandLayout::mma_fragments;
  if (workspace && args.a.format == Format::fp8_block128 && args.b.format != Format::fp8_block128)
    args = host::with_planned_workspace(args);
  require_valid_sizes(args);
  const SignalLayout layout = signal_layout(args);
  if (k == 0) {
    // Only K <= kShortDecodeK changes a tile (narrows_decode_tile): where it would here, K must be given.
    GroupedGemmArgs short_k = args;
    short_k.k = host::kShortDecodeK;
    const SignalLayout other = signal_layout(short_k);
    if (other.block_m != layout.block_m || other.block_n != layout.block_n)
      bad("k: the tile of these sizes depends on K (" + std::to_string(other.block_m) + "x" +
          std::to_string(other.block_n) + " for K <= " + std::to_string(host::kShortDecodeK) + ", else " +
          std::to_string(layout.block_m) + "x" + std::to_string(layout.block_n) + "): pass k");
  }
  return layout_dict(layout);
}

// The workspace helpers' sizes: k is required there (validate_sizes reads k = 0 as not known).
GroupedGemmArgs sizes_and_formats(int num_experts, int max_m, int k, const std::string& a_format,
                                  const std::string& b_format) {
  if (k < 1) bad("k must be >= 1, got " + std::to_string(k));
  GroupedGemmArgs args;
  args.num_experts = num_experts, args.max_m = max_m, args.k = k;
  args.a.format = parse_format(a_format, "a_format");
  args.b.format = parse_format(b_format, "b_format");
  return args;
}

std::vector<uint32_t> expected_signals(const std::vector<int32_t>& masked_m, int max_m, int n, int block_m,
                                       int block_n, const std::string& granularity) {
  const SignalLayout l{int(masked_m.size()), max_m, n, block_m, block_n, parse_granularity(granularity)};
  if (l.granularity == SignalGranularity::none) bad("granularity: expected values need per_expert or per_row_block");
  if (block_m < 1 || block_n < 1 || max_m < 1 || n < 1) bad("max_m, n, block_m and block_n must be >= 1");
  for (size_t e = 0; e < masked_m.size(); ++e)
    if (masked_m[e] < 0 || masked_m[e] > max_m)
      bad("masked_m[" + std::to_string(e) + "] = " + std::to_string(masked_m[e]) + " is outside [0, max_m = " +
          std::to_string(max_m) + "]");
  std::vector<uint32_t> values(size_t(l.counter_count()));
  const int per_expert = l.granularity == SignalGranularity::per_row_block ? l.row_blocks_per_expert() : 1;
  for (int e = 0; e < l.num_experts; ++e)
    for (int rb = 0; rb < per_expert; ++rb) values[size_t(l.counter_index(e, rb))] = l.expected(masked_m[e], rb);
  return values;
}

template <typename T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T> values, std::vector<size_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule free_owned(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(owned->data(), shape.size(), shape.data(), free_owned);
}

// Host quantizer (the C++ reference): x float32 [E, rows, K] -> (data uint8, scales, global_scale).
nb::tuple quantize(nb::ndarray<const float, nb::ndim<3>, nb::c_contig, nb::device::cpu> x, const std::string& format,
                   const std::string& role) {
  if (role != "a" && role != "b") bad("role must be 'a' (activations) or 'b' (weights)");
  const Format f = parse_format(format, "format");
  ref::QuantizedOperand q;
  try {
    q = ref::quantize(f, role == "a" ? ref::Role::a : ref::Role::b, x.data(), extent(x.shape(0), "x.shape[0]"),
                      extent(x.shape(1), "x.shape[1]"), extent(x.shape(2), "x.shape[2]"));
  } catch (const std::invalid_argument& e) {
    bad(e.what());
  }
  auto data = to_numpy(std::move(q.data), {size_t(q.experts), size_t(q.rows), size_t(q.row_bytes())});
  nb::object scales = nb::none();
  if (f == Format::fp8_block128) {
    const size_t n = q.scales.size() / 4;  // apart: the order of a call's arguments is unspecified
    std::vector<float> s(n);
    std::memcpy(s.data(), q.scales.data(), q.scales.size());
    scales = nb::cast(to_numpy(std::move(s), {n}));
  } else if (!q.scales.empty()) {
    const size_t n = q.scales.size();
    scales = nb::cast(to_numpy(std::move(q.scales), {n}));
  }
  const size_t experts = q.global_scale.size();
  return nb::make_tuple(data, scales, to_numpy(std::move(q.global_scale), {experts}));
}

// FlashInfer's swizzled 128x4 scales (any shape, contiguous bytes) -> row-major [E, rows, cols].
nb::ndarray<nb::numpy, uint8_t> scales_from_flashinfer(nb::ndarray<const uint8_t, nb::c_contig, nb::device::cpu> sf,
                                                       int experts, int rows, int cols) {
  const int64_t needed = ref::flashinfer_128x4_bytes(experts, rows, cols);  // throws (ValueError) on bad sizes
  if (int64_t(sf.size()) != needed)
    bad("sf has " + std::to_string(sf.size()) + " bytes; the 128x4 layout of " + std::to_string(experts) + " x " +
        std::to_string(rows) + " x " + std::to_string(cols) + " scales has " + std::to_string(needed));
  return to_numpy(ref::scales_from_flashinfer_128x4(sf.data(), experts, rows, cols),
                  {size_t(experts), size_t(rows), size_t(cols)});
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "SignalGEMM: masked grouped GEMM with completion signals for Hopper (C++ core)";
  m.def("grouped_gemm", &grouped_gemm, nb::arg("a"), nb::arg("sfa").none(), nb::arg("b"), nb::arg("sfb").none(),
        nb::arg("out"), nb::arg("masked_m"), nb::arg("a_format"), nb::arg("b_format"), nb::arg("alpha").none(),
        nb::arg("signals").none(), nb::arg("granularity"), nb::arg("scope"), nb::arg("sm_count"),
        nb::arg("expected_m"), nb::arg("block_m"), nb::arg("block_n"), nb::arg("stages"), nb::arg("cluster"), nb::arg("stream"),
        nb::arg("error_flag").none(), nb::arg("workspace").none(), nb::arg("b_n") = 0,
        nb::arg("load_only") = false, nb::arg("c_dtype") = "");
  m.def("pack_mma_fragments", &pack_fragments, nb::arg("b"), nb::arg("sfb"), nb::arg("b_format"), nb::arg("packed"),
        nb::arg("stream"));
  m.def("signal_layout", &signal_layout_for, nb::arg("num_experts"), nb::arg("max_m"), nb::arg("n"),
        nb::arg("expected_m") = 0, nb::arg("block_m") = 0, nb::arg("block_n") = 0,
        nb::arg("granularity") = "per_expert", nb::arg("a_format") = "fp8_block128",
        nb::arg("b_format") = "fp8_block128", nb::arg("k") = 0, nb::arg("workspace") = true, nb::arg("stages") = 0,
        nb::arg("cluster") = 0, nb::arg("mma_fragments") = false);
  m.def(
      "activation_workspace_bytes",
      [](int e, int max_m, int k, const std::string& a, const std::string& b) {
        const GroupedGemmArgs args = sizes_and_formats(e, max_m, k, a, b);
        require_valid_sizes(args, /*unknown_n=*/true);
        return activation_workspace_bytes(args);
      },
      nb::arg("num_experts"), nb::arg("max_m"), nb::arg("k"), nb::arg("a_format"), nb::arg("b_format"));
  m.def(
      "workspace_bytes",
      [](int e, int max_m, int k, const std::string& a, const std::string& b, int n, int expected_m, int block_m,
         int block_n, int stages, int cluster, int sm_count, bool mma_fragments) {
        GroupedGemmArgs args = sizes_and_formats(e, max_m, k, a, b);
        args.n = n;  // 0: not known (then no split of K is planned)
        args.expected_m = expected_m;
        args.sm_count = sm_count;  // the SMs a split of K is planned over (0: all)
        args.config = TileConfig{block_m, block_n, stages, cluster};
        if (mma_fragments) args.b.layout = OperandLayout::mma_fragments;  // packed weights: tiles of their own
        // Checked as the launch that has this workspace (its activations converted where the pairing does).
        require_valid_sizes(host::with_planned_workspace(args), /*unknown_n=*/true);
        return workspace_bytes(args);
      },
      nb::arg("num_experts"), nb::arg("max_m"), nb::arg("k"), nb::arg("a_format"), nb::arg("b_format"),
      nb::arg("n") = 0, nb::arg("expected_m") = 0, nb::arg("block_m") = 0, nb::arg("block_n") = 0,
      nb::arg("stages") = 0, nb::arg("cluster") = 0, nb::arg("sm_count") = 0, nb::arg("mma_fragments") = false);
  m.def("expected_signals", &expected_signals, nb::arg("masked_m"), nb::arg("max_m"), nb::arg("n"),
        nb::arg("block_m"), nb::arg("block_n"), nb::arg("granularity"));
  m.def("quantize", &quantize, nb::arg("x"), nb::arg("format"), nb::arg("role"));
  m.def("scales_from_flashinfer", &scales_from_flashinfer, nb::arg("sf"), nb::arg("experts"), nb::arg("rows"),
        nb::arg("cols"));
  m.attr("ERROR_MASKED_M_OUT_OF_RANGE") = kErrorMaskedMOutOfRange;
}
