"""SignalGEMM: masked grouped GEMM with completion signals for NVIDIA Hopper.

Takes any DLPack tensor (torch tensors directly, no copies) and launches on the caller's current
CUDA stream: torch's current stream of the output's device (of the activations' where the output is
not a torch tensor), else the default stream, unless ``stream`` is given. Argument names follow FlashInfer's ``grouped_gemm_nt_masked`` where
they mean the same thing (``dst_signals`` is accepted for ``signals``), and its calling convention is
accepted as it is (``ab_dtype``, ``sf_dtype``, ``sf_vec_size``, ``c_dtype``, ``mma_tiler_mn``,
``cluster_shape_mn``, ``alpha_dtype``; its (rows, cols, experts) tensor views and swizzled scales).
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from typing import Any, Optional, Sequence, Tuple

from . import _C

__all__ = [
    "grouped_gemm_nt_masked",
    "MmaFragments",
    "pack_mma_fragments",
    "expected_signals",
    "signal_layout",
    "activation_workspace_bytes",
    "workspace_bytes",
    "quantize",
    "scales_from_flashinfer",
    "format_from_flashinfer",
    "ERROR_MASKED_M_OUT_OF_RANGE",
]

ERROR_MASKED_M_OUT_OF_RANGE = _C.ERROR_MASKED_M_OUT_OF_RANGE


def _is_cuda_torch(t: Any) -> bool:
    """Whether t is a torch tensor on a GPU (torch is optional)."""
    try:
        import torch
    except ImportError:
        return False
    return isinstance(t, torch.Tensor) and t.is_cuda


def _current_stream(tensor: Any) -> int:
    """The CUDA stream handle to launch on for this tensor (0: the default stream)."""
    if not _is_cuda_torch(tensor):
        return 0
    import torch

    return torch.cuda.current_stream(tensor.device).cuda_stream


def _stream_handle(stream: Any) -> int:
    """A CUDA stream as its raw handle: a torch.cuda.Stream (or anything with ``cuda_stream``, or the
    ``__cuda_stream__`` protocol), or an int that already is one."""
    if hasattr(stream, "__cuda_stream__"):
        stream = stream.__cuda_stream__()[1]
    elif hasattr(stream, "cuda_stream"):
        stream = stream.cuda_stream
    if isinstance(stream, bool) or not isinstance(stream, numbers.Integral) or not 0 <= stream < 2**64:
        raise ValueError(f"signalgemm: stream must be a CUDA stream (torch.cuda.Stream, __cuda_stream__) or its "
                         f"handle as an int in [0, 2**64), got {type(stream).__name__} {stream!r}")
    return int(stream)


def _on_launch_stream(stream: Any, tensor: Any) -> Any:
    """With an explicit ``stream``: a context making it torch's current stream for the call (on the
    tensor's device), so that the call's temporaries (the workspace, converted scales) are written and
    freed in that stream's order: torch's caching allocator hands a freed block out again only in the
    order of the stream it was allocated on, and the launch on ``stream`` may outlive the call."""
    if stream is None or not _is_cuda_torch(tensor):
        return contextlib.nullcontext()
    import torch

    if isinstance(stream, torch.cuda.Stream) and stream.device != tensor.device:
        raise ValueError(f"signalgemm: stream is on {stream.device}, the tensors on {tensor.device}")
    if not isinstance(stream, torch.cuda.Stream):
        handle = _stream_handle(stream)
        stream = (torch.cuda.default_stream(tensor.device) if handle == 0
                  else torch.cuda.ExternalStream(handle, device=tensor.device))
    return torch.cuda.stream(stream)


_DLPACK_CPU, _DLPACK_CUDA = 1, 2  # DLPack device types (pinned host memory is 3, managed memory 13)


def _require_gpu(name: str, t: Any, pinned_ok: bool = False) -> None:
    """A tensor argument (None, or False for ``workspace``: not given) must live on a GPU, or
    (``pinned_ok``: counters and flags, for a consumer on the host) in pinned host memory; the
    extension checks the rest. Anything else (a host array, a list, a number) is refused here by
    name, not by the extension's signature."""
    if t is None or t is False:
        return
    where = None
    if getattr(t, "is_cuda", None) is False and hasattr(t, "device"):  # torch on the host
        if pinned_ok and t.is_pinned():
            return
        where = f"is on {t.device}"
    elif not hasattr(t, "__dlpack__"):
        where = f"is not a tensor ({type(t).__name__})"
    elif hasattr(t, "__dlpack_device__") and not pinned_ok:
        device_type = t.__dlpack_device__()[0]
        if device_type == _DLPACK_CPU:
            where = "is in host memory"
        elif device_type != _DLPACK_CUDA:  # the extension takes operands in device memory only
            where = f"is DLPack device type {device_type}, not CUDA device memory"
    if where is not None:
        raise ValueError(f"signalgemm: {name} {where}; it must be a CUDA tensor"
                         + (" or pinned host memory (pin_memory())" if pinned_ok else ""))


def _require_int32(name: str, value: Any) -> None:
    """An integer option (None: not given) must be an int in int32's range, named if not (the
    extension's signature would only say the call matched no overload)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"signalgemm: {name} must be an integer, got {type(value).__name__} {value!r}")
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"signalgemm: {name} = {value} is out of range (int32)")


def _require_str(name: str, value: Any) -> None:
    """A string option (a format, granularity, scope) must be a str, named if not (the extension names
    an unknown value; its signature would only say the call matched no overload)."""
    if not isinstance(value, str):
        raise ValueError(f"signalgemm: {name} must be a string, got {type(value).__name__} {value!r}")


def _formats(a_format: Any, b_format: Any, a_default: Optional[str] = None) -> Tuple[str, str]:
    """The operands' formats: ``b_format`` None means a's; ``a_format`` None means ``a_default`` where
    there is one. Only None means "not given" (an empty string is an unknown format, not the default)."""
    if a_format is None and a_default is not None:
        a_format = a_default
    b_format = a_format if b_format is None else b_format
    _require_str("a_format", a_format)
    _require_str("b_format", b_format)
    return a_format, b_format


def _without_grad(t: Any) -> Any:
    """A torch tensor that requires grad as a detached view of the same memory (torch's DLPack export
    refuses the tensor itself); anything else as it is."""
    return t.detach() if getattr(t, "requires_grad", False) is True else t


def _int_pair(name: str, value: Any) -> Tuple[int, int]:
    """FlashInfer's (m, n) options: two integers, named if not."""
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value)):
        raise ValueError(f"signalgemm: {name} must be a pair of integers, got {value!r}")
    return int(value[0]), int(value[1])


def _require_int32_options(**options: Any) -> None:
    """The helpers' integer arguments, each an int in int32's range (named if not)."""
    for name, value in options.items():
        if value is None:
            raise ValueError(f"signalgemm: {name} must be an integer, got None")
        _require_int32(name, value)


def _as_pair(value: Any, name: str) -> Tuple[Any, Any]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    raise TypeError(f"signalgemm: {name} must be a pair (data, scales); use (data, None) for bf16")


# FlashInfer's names of the operand formats: (ab_dtype, sf_dtype, sf_vec_size) -> SignalGEMM's format.
# The last two are SignalGEMM's own (FlashInfer has no DeepSeek-style FP8 and no bf16 operands here).
_FLASHINFER_FORMATS = {
    ("float4_e2m1fn", "float8_e4m3fn", 16): "nvfp4",
    ("float4_e2m1fn", "float8_e8m0fnu", 32): "mxfp4",
    ("float8_e4m3fn", "float8_e8m0fnu", 32): "mxfp8",
    ("float8_e4m3fn", "float32", 128): "fp8_block128",
    ("bfloat16", None, None): "bf16",
}


def format_from_flashinfer(ab_dtype: str, sf_dtype: Optional[str] = None, sf_vec_size: Optional[int] = None) -> str:
    """SignalGEMM's name of the operand format FlashInfer calls (ab_dtype, sf_dtype, sf_vec_size), e.g.
    ("float4_e2m1fn", "float8_e4m3fn", 16) -> "nvfp4": what ``a_format`` / ``b_format`` of the size
    helpers (``signal_layout``, ``expected_signals``, ``workspace_bytes``) take."""
    _require_str("ab_dtype", ab_dtype)
    if sf_dtype is not None:
        _require_str("sf_dtype", sf_dtype)
    _require_int32("sf_vec_size", sf_vec_size)
    fmt = _FLASHINFER_FORMATS.get((ab_dtype, sf_dtype, None if sf_vec_size is None else int(sf_vec_size)))
    if fmt is None:
        known = ", ".join(f"({a!r}, {s!r}, {v})" for a, s, v in _FLASHINFER_FORMATS)
        raise ValueError(f"signalgemm: ab_dtype = {ab_dtype!r}, sf_dtype = {sf_dtype!r}, sf_vec_size = {sf_vec_size} "
                         f"is not a supported operand format; supported (ab_dtype, sf_dtype, sf_vec_size): {known}")
    return fmt


def _elements_per_row(stored: int, fmt: str) -> int:
    """K of a row stored in ``stored`` elements (FP4 packs two per byte)."""
    return stored * (2 if fmt in ("nvfp4", "mxfp4") else 1)


def _is_fp4_typed(t: Any) -> bool:
    return str(getattr(t, "dtype", "")) == "torch.float4_e2m1fn_x2"


def _as_bytes_if_fp4(t: Any) -> Any:
    """torch's float4_e2m1fn_x2 tensors (two e2m1 codes per byte, low nibble first, as nvfp4 / mxfp4 data
    here) as their uint8 bytes; anything else unchanged."""
    if _is_fp4_typed(t):
        import torch

        return t.view(torch.uint8)
    return t


@functools.lru_cache(maxsize=None)
def _torch_exports_float8() -> bool:
    """Whether this torch hands float8 tensors to DLPack (DLPack 1.1's float8 codes; older torch raises)."""
    import torch

    try:
        torch.empty(1, dtype=torch.float8_e4m3fn).__dlpack__()
        return True
    except Exception:  # BufferError or RuntimeError, by version
        return False


# The float8 dtype an argument of a format may have, where it may have one ("data" or "scales").
_FLOAT8_DTYPES = {
    ("data", "fp8_block128"): "float8_e4m3fn",
    ("data", "mxfp8"): "float8_e4m3fn",
    ("scales", "nvfp4"): "float8_e4m3fn",
    ("scales", "mxfp4"): "float8_e8m0fnu",
    ("scales", "mxfp8"): "float8_e8m0fnu",
}


def _float8_as_bytes(t: Any, fmt: str, role: str, name: str) -> Any:
    """A torch float8 tensor as its uint8 bytes where this torch cannot export float8 through DLPack
    (its dtype checked here, as the extension checks it otherwise); anything else unchanged."""
    dtype = str(getattr(t, "dtype", ""))
    if not dtype.startswith("torch.float8") or _torch_exports_float8():
        return t
    allowed = _FLOAT8_DTYPES.get((role, fmt))
    if dtype != f"torch.{allowed}":
        raise ValueError(f"signalgemm: {name} is {dtype}, which does not hold the {role} of format {fmt}"
                         + (f" ({allowed} or uint8 does)" if allowed else ""))
    import torch

    return t.view(torch.uint8)


def _native_order(t: Any) -> Any:
    """A torch tensor in FlashInfer's (rows, cols, experts) order (CuTe's (m, k, l): a view of [E, rows,
    cols] memory, its dimension 1 the contiguous one) as the [E, rows, cols] view SignalGEMM takes; any
    other tensor unchanged (no copy either way). One expert's (rows, cols, 1) tensor may have any stride in
    its last dimension (torch gives a contiguous one 1); SignalGEMM's own [E, rows, cols] never has
    a contiguous dimension 1 of more than one element, cols being at least 8."""
    if (hasattr(t, "permute") and hasattr(t, "stride") and t.dim() == 3 and t.stride(1) == 1 and t.shape[1] > 1
            and (t.stride(2) != 1 or t.shape[2] == 1)):
        return t.permute(2, 0, 1)
    return t


def _swizzled_to_rows(sf: Any, experts: int, rows: int, cols: int, name: str) -> Any:
    """FlashInfer's 128x4-swizzled block scales, as the 6-d torch tensor its API takes (logical
    (32, 4, rm, 4, rk, E), CuTe's order, or the physical (E, rm, rk, 32, 4, 4)) -> a row-major copy
    [experts, rows, cols] on its device, its dtype kept (docs/formats.md: scale (r, c) at
    ((r / 128) rk + c / 4) 512 + (r % 32) 16 + ((r % 128) / 32) 4 + c % 4 of an expert's bytes)."""
    if tuple(sf.shape[:2]) == (32, 4) and sf.shape[3] == 4:
        rows_first = sf.permute(5, 2, 1, 0, 4, 3)  # (E, rm, r % 128 / 32, r % 32, rk, c % 4)
    elif tuple(sf.shape[3:]) == (32, 4, 4):  # (E, rm, rk, r % 32, r % 128 / 32, c % 4)
        rows_first = sf.permute(0, 1, 4, 3, 2, 5)
    else:
        raise ValueError(f"signalgemm: {name} is 6-d but not FlashInfer's swizzled scale layout (32, 4, rm, 4, rk, E) "
                         f"or (E, rm, rk, 32, 4, 4), got shape {tuple(sf.shape)}")
    e, row_tiles, _, _, col_tiles, _ = rows_first.shape
    if e != experts or row_tiles * 128 < rows or col_tiles * 4 < cols:
        raise ValueError(f"signalgemm: {name} (swizzled, [{e}, {row_tiles * 128}, {col_tiles * 4}] scales) does not "
                         f"cover [{experts}, {rows}, {cols}]")
    return rows_first.reshape(e, row_tiles * 128, col_tiles * 4)[:, :rows, :cols].contiguous()


def _swizzled_bytes(sf: Any, experts: int, rows: int, cols: int, name: str) -> Any:
    """FlashInfer's swizzled scales as a torch tensor: its 6-d tensor as it is, or its bytes in any other
    contiguous shape (FlashInfer reads them by pointer: flat, or SGLang's [E, round_up(rows, 128),
    round_up(cols, 4)]) as the physical 6-d (E, rm, rk, 32, 4, 4)."""
    if sf.dim() == 6:
        return sf
    row_tiles, col_tiles = (rows + 127) // 128, (cols + 3) // 4
    if sf.element_size() != 1 or not sf.is_contiguous() or sf.numel() != experts * row_tiles * col_tiles * 512:
        raise ValueError(f"signalgemm: {name} must be FlashInfer's swizzled 128x4 scales, "
                         f"{experts * row_tiles * col_tiles * 512} contiguous bytes for {experts} experts x {rows} rows "
                         f"x {cols} scales, got {sf.dtype} of shape {tuple(sf.shape)}")
    return sf.reshape(experts, row_tiles, col_tiles, 32, 4, 4)


def _scales_in_rows(sf: Any, data: Any, fmt: str, name: str) -> Any:
    """FlashInfer's swizzled scales (a torch tensor: its 6-d tensor, or its bytes in any contiguous shape,
    _swizzled_bytes) for operand `data` ([E, rows, K or K/2], or MmaFragments) of an nvfp4, mxfp4 or
    mxfp8 operand -> SignalGEMM's row-major [E, rows, K / vec] (_swizzled_to_rows); fp8_block128 and
    bf16 scales unchanged. Swizzled scales of another framework are refused: read as they are, they would
    pass the size checks and be misread."""
    if sf is None:
        return sf
    vec = {"nvfp4": 16, "mxfp4": 32, "mxfp8": 32}.get(fmt)
    if not hasattr(sf, "permute"):
        if vec is not None:
            raise ValueError(f"signalgemm: {name}: with ab_dtype, {fmt} scales are FlashInfer's swizzled bytes, read "
                             f"from torch tensors only (torch.from_dlpack converts others); scales in SignalGEMM's "
                             f"row layout go with a_format instead of ab_dtype")
        return sf
    if vec is None:
        if sf.dim() == 6:
            raise ValueError(f"signalgemm: {name} in FlashInfer's swizzled layout needs an nvfp4, mxfp4 or mxfp8 "
                             f"operand, not {fmt}")
        return sf
    if isinstance(data, MmaFragments):
        experts, rows, k = data.data.shape[0], data.n, data.k
    elif len(getattr(data, "shape", ())) != 3:
        raise ValueError(f"signalgemm: {name} is given in FlashInfer's swizzled layout, so its operand must have 3 "
                         f"dimensions, not {len(getattr(data, 'shape', ()))}")
    else:
        experts, rows, k = data.shape[0], data.shape[1], _elements_per_row(data.shape[2], fmt)
    return _swizzled_to_rows(_swizzled_bytes(sf, experts, rows, k // vec, name), experts, rows, k // vec, name)


class MmaFragments:
    """FP4 weights (nvfp4, mxfp4) and their block scales rearranged once by ``pack_mma_fragments``
    (docs/formats.md, the mma_fragments layout): pass it as the weights of ``rhs``, ``rhs=(packed, None)``
    (a scales tensor given beside it is not read: the packed blocks carry the scales).
    ``data``: uint8 [E, ceil(N/64), ceil(K/64), 2560]; ``n``, ``k``: the weights' logical sizes."""

    __slots__ = ("data", "n", "k")

    def __init__(self, data: Any, n: int, k: int):
        _require_int32_options(n=n, k=k)
        if int(n) < 1 or int(k) < 1:
            raise ValueError(f"signalgemm: MmaFragments needs n and k >= 1, got n = {n}, k = {k}")
        self.data, self.n, self.k = data, int(n), int(k)


def pack_mma_fragments(b: Any, sfb: Any, *, b_format: Optional[str] = None, swizzled: Optional[bool] = None,
                       stream: Optional[int] = None) -> MmaFragments:
    """Rearranges FP4 weights b (nvfp4 or mxfp4 bytes, uint8 [E, N, K/2] on the GPU, torch) and their block
    scales sfb into the mma_fragments layout, once, at load time: the GEMM then dequantizes them with
    fewer instructions (bf16 activations, or ones of the weights' format or fp8_block128 with the default
    workspace), with bit-identical results. sfb: SignalGEMM's row layout ([E, N, K/16] e4m3 for nvfp4,
    [E, N, K/32] e8m0 for mxfp4; uint8 or the float8 dtype, contiguous, any shape of those bytes), or
    with ``swizzled=True`` FlashInfer's 128x4-swizzled scales (its 6-d tensor, taken as such by default,
    or its bytes in any contiguous shape). ``b_format`` ("nvfp4" or "mxfp4"): by default sfb's float8
    dtype, or else its size in the row layout, says which."""
    if not _is_cuda_torch(b):  # checked before importing torch, which may be absent
        raise TypeError("signalgemm: pack_mma_fragments takes a CUDA torch tensor [E, N, K/2] of FP4 bytes")
    import torch

    if b.dim() != 3:
        raise TypeError("signalgemm: pack_mma_fragments takes a CUDA torch tensor [E, N, K/2] of FP4 bytes")
    if str(b.dtype) not in ("torch.uint8", "torch.int8", "torch.float4_e2m1fn_x2"):
        raise TypeError(f"signalgemm: pack_mma_fragments takes FP4 bytes (uint8, int8 or float4_e2m1fn_x2), got {b.dtype}")
    if not _is_cuda_torch(sfb):
        raise TypeError("signalgemm: pack_mma_fragments takes the weights' block scales sfb as a CUDA torch tensor")
    if sfb.device != b.device:
        raise ValueError(f"signalgemm: sfb is on {sfb.device} but b on {b.device}; pack them on one GPU")
    experts, n, k = b.shape[0], b.shape[1], b.shape[2] * 2
    if swizzled is None:
        swizzled = sfb.dim() == 6
    if not isinstance(swizzled, bool):
        raise ValueError(f"signalgemm: swizzled must be True, False or None, got {swizzled!r}")
    if b_format is None:
        by_dtype = {"torch.float8_e4m3fn": "nvfp4", "torch.float8_e8m0fnu": "mxfp4"}.get(str(sfb.dtype))
        by_size = {experts * n * (k // 16): "nvfp4", experts * n * (k // 32): "mxfp4"}.get(sfb.numel())
        b_format = by_dtype or (None if swizzled else by_size)
        if b_format is None:
            raise ValueError("signalgemm: pack_mma_fragments cannot tell nvfp4 from mxfp4 scales: pass b_format")
    _require_str("b_format", b_format)
    if b_format not in ("nvfp4", "mxfp4"):
        raise ValueError(f"signalgemm: pack_mma_fragments packs nvfp4 or mxfp4 weights, got b_format = {b_format!r}")
    vec = 16 if b_format == "nvfp4" else 32
    with _on_launch_stream(stream, b):  # packed is allocated in the order of the stream that writes it
        if swizzled:  # FlashInfer's scales, in rows first
            sfb = _swizzled_to_rows(_swizzled_bytes(sfb, experts, n, k // vec, "sfb"), experts, n, k // vec, "sfb")
        if sfb.element_size() != 1 or not sfb.is_contiguous() or sfb.numel() != experts * n * (k // vec):
            raise ValueError(f"signalgemm: sfb must be the {b_format} block scales of b in the row layout, "
                             f"{experts * n * (k // vec)} contiguous bytes ([{experts}, {n}, {k // vec}]), or "
                             f"FlashInfer's swizzled ones (swizzled=True); got {sfb.dtype} of shape {tuple(sfb.shape)}")
        packed = torch.empty((experts, (n + 63) // 64, (k + 63) // 64, 2560), dtype=torch.uint8, device=b.device)
        _C.pack_mma_fragments(b.view(torch.uint8), sfb.view(torch.uint8), b_format, packed,
                              _current_stream(b) if stream is None else _stream_handle(stream))
    return MmaFragments(packed, n, k)


def grouped_gemm_nt_masked(
    lhs: Tuple[Any, Any],
    rhs: Tuple[Any, Any],
    out: Any,
    masked_m: Any,
    *,
    a_format: Optional[str] = None,
    b_format: Optional[str] = None,
    alpha: Any = None,
    signals: Any = None,
    dst_signals: Any = None,
    granularity: str = "per_expert",
    scope: str = "gpu",
    sm_count: Optional[int] = None,
    expected_m: Optional[int] = None,
    block_m: int = 0,
    block_n: int = 0,
    stages: int = 0,
    cluster: int = 0,
    error_flag: Any = None,
    stream: Optional[int] = None,
    workspace: Any = None,
    load_only: bool = False,
    ab_dtype: Optional[str] = None,
    sf_dtype: Optional[str] = None,
    sf_vec_size: Optional[int] = None,
    c_dtype: Optional[str] = None,
    mma_tiler_mn: Optional[Tuple[int, int]] = None,
    cluster_shape_mn: Optional[Tuple[int, int]] = None,
    alpha_dtype: Optional[str] = None,
) -> Any:
    """out[e, i, :] = alpha[e] * A[e, i, :] @ B[e].T for i < masked_m[e]; returns ``out``.

    lhs = (a, sfa): a [E, max_m, K] (fp8: one byte per element; fp4: [E, max_m, K/2] packed, uint8 or
    torch.float4_e2m1fn_x2),
    rhs = (b, sfb): b [E, N, K] (or FP4 weights and scales packed by ``pack_mma_fragments``, sfb then None),
    scales in the layouts of docs/formats.md, in the formats ``a_format`` (default "fp8_block128") and ``b_format``
    (default: a_format); out bf16 or fp16 [E, max_m, N] (bf16 with fp8_block128 x FP4);
    masked_m int32 [E] on the GPU. ``signals`` (uint32/int32 [counter_count]) receives one release
    add per finished tile; ``expected_signals`` gives the values the counters reach. ``signals`` and
    ``error_flag`` may be pinned host tensors (``pin_memory()``), for a consumer on the host: then
    pass ``scope="sys"``, under which a counter's value orders the rows it covers for the host too.

    ``workspace`` (a device tensor of ``workspace_bytes`` bytes; None allocates it with torch for
    torch inputs, False runs without; other frameworks' activations with ``signals`` must pass one or
    False where the pairing converts them, as that choice sets the tile the counters count): nvfp4,
    mxfp4 or mxfp8 on both sides, or fp8_block128 x nvfp4 / mxfp4,
    convert their activations to bf16 there once (without: once per column block, slower);
    fp8_block128 x fp8_block128 keeps a tile counter there, from which the CTAs take tiles
    dynamically.

    ``expected_m`` (the typical masked_m) picks the tile; without it the tile is planned for max_m, which
    costs a decode launch in a large slab: at E=32, masked_m ~32, max_m 1024, bf16 x nvfp4 ran 32-40%
    slower, fp8_block128 4-8% (docs/configuration.md).

    ``load_only=True`` loads the kernels this call would launch and returns without launching: call it
    once before a consumer first spins beside the launch (under CUDA's default lazy module loading, a
    kernel's first launch may wait for the device to go idle; docs/signals.md).

    FlashInfer's calling convention (its ``grouped_gemm_nt_masked``) is accepted as it is: ``ab_dtype``,
    ``sf_dtype`` and ``sf_vec_size`` name both operands' format in place of ``a_format`` / ``b_format``
    (("float4_e2m1fn", "float8_e4m3fn", 16): nvfp4; (..., "float8_e8m0fnu", 32): mxfp4;
    ("float8_e4m3fn", "float8_e8m0fnu", 32): mxfp8; SignalGEMM's own ("float8_e4m3fn", "float32", 128):
    fp8_block128 and ("bfloat16", None, None): bf16); with them, torch tensors may come as FlashInfer's
    (rows, cols, experts) views of [E, rows, cols] memory (a (m, k, l), b (n, k, l), out (m, n, l)), and
    nvfp4 / mxfp4 / mxfp8 block scales are FlashInfer's swizzled 128x4 bytes as FlashInfer reads them
    (torch tensors: its 6-d tensors, or the bytes in any contiguous shape such as SGLang's
    [E, round_up(rows, 128), round_up(K / vec, 4)]; other frameworks' tensors are refused there, as
    their bytes could pass for row-major scales), converted here to the row-major layout on every call
    (a copy of the scales: to convert the weights' once, use ``scales_from_flashinfer`` and call with
    ``a_format`` instead of ``ab_dtype``). ``c_dtype``
    ("bfloat16" or "float16") must match ``out``; ``mma_tiler_mn`` = (block_m, block_n);
    ``cluster_shape_mn`` (1, 1), (2, 1) or (1, 2) = cluster 1 or 2; ``alpha_dtype`` "float32". One
    difference remains: a counter of ``dst_signals`` reaches ``expected_signals(...)`` (one add per
    tile; ``a_format=format_from_flashinfer(ab_dtype, sf_dtype, sf_vec_size)`` there), not the CTA
    count FlashInfer's counters reach.
    """
    out_given = out
    # One tensor picks the launch's stream, in whose order every temporary of the call (converted
    # scales, the workspace) is made: out, or a where out is another framework's (DLPack) tensor.
    anchor = out if _is_cuda_torch(out) else (lhs[0] if isinstance(lhs, (tuple, list)) and lhs else lhs)
    with _on_launch_stream(stream, anchor):
        if signals is not None and dst_signals is not None:
            raise ValueError("signalgemm: pass signals or dst_signals, not both")
        signals = signals if signals is not None else dst_signals
        a, sfa = _as_pair(lhs, "lhs")
        b, sfb = _as_pair(rhs, "rhs")
        if isinstance(b, MmaFragments):
            sfb = None  # the packed blocks carry the converted scales; a tensor given here is not read
        # Weights held as nn.Parameter (requires_grad) refuse DLPack export; the kernel makes no gradients.
        a, sfa, b, sfb, out, alpha = (_without_grad(t) for t in (a, sfa, b, sfb, out, alpha))
        fp4_typed = {"a": _is_fp4_typed(a), "b": _is_fp4_typed(b)}
        a, b = _as_bytes_if_fp4(a), _as_bytes_if_fp4(b)
        if ab_dtype is not None:  # FlashInfer's convention
            fmt = format_from_flashinfer(ab_dtype, sf_dtype, sf_vec_size)
            for name, given in (("a_format", a_format), ("b_format", b_format)):
                if given is not None and given != fmt:
                    raise ValueError(f"signalgemm: {name} = {given!r} contradicts ab_dtype = {ab_dtype!r} ({fmt})")
            a_format = b_format = fmt
            a, b, out = _native_order(a), _native_order(b), _native_order(out)
            sfa, sfb = _scales_in_rows(sfa, a, fmt, "sfa"), _scales_in_rows(sfb, b, fmt, "sfb")
        elif sf_dtype is not None or sf_vec_size is not None:
            raise ValueError("signalgemm: sf_dtype and sf_vec_size describe ab_dtype's format: pass ab_dtype too")
        if c_dtype is not None and c_dtype not in ("bfloat16", "float16"):  # out's own dtype: the extension's check
            raise ValueError(f"signalgemm: c_dtype = {c_dtype!r} is not supported: out must be bfloat16 or float16")
        if mma_tiler_mn is not None:
            tile = _int_pair("mma_tiler_mn", mma_tiler_mn)
            if (block_m, block_n) not in ((0, 0), tile):
                raise ValueError(f"signalgemm: mma_tiler_mn = {mma_tiler_mn} must be (block_m, block_n) and agree with "
                                 f"block_m = {block_m}, block_n = {block_n}")
            block_m, block_n = tile
        if cluster_shape_mn is not None:
            shape = _int_pair("cluster_shape_mn", cluster_shape_mn)
            if shape not in ((1, 1), (2, 1), (1, 2)) or cluster not in (0, shape[0] * shape[1]):
                raise ValueError(f"signalgemm: cluster_shape_mn = {cluster_shape_mn} must be (1, 1), (2, 1) or (1, 2) "
                                 f"(a cluster of 1 or 2 CTAs) and agree with cluster = {cluster}")
            cluster = shape[0] * shape[1]
        if alpha_dtype not in (None, "float32"):
            raise ValueError(f"signalgemm: alpha_dtype = {alpha_dtype!r} is not supported: alpha is float32")
        b_n = 0
        if isinstance(b, MmaFragments):  # packed FP4 weights: the layout says N, the data not
            b, b_n = b.data, b.n
        for name, value in (("sm_count", sm_count), ("expected_m", expected_m), ("block_m", block_m),
                            ("block_n", block_n), ("stages", stages), ("cluster", cluster)):
            _require_int32(name, value)
        block_m, block_n, stages, cluster = block_m or 0, block_n or 0, stages or 0, cluster or 0  # None: not given
        if sm_count is not None and sm_count < 1:
            raise ValueError(f"signalgemm: sm_count must be >= 1, got {sm_count}")
        a_format, b_format = _formats(a_format, b_format, a_default="fp8_block128")
        _require_str("granularity", granularity)
        _require_str("scope", scope)
        if not isinstance(load_only, bool):
            raise ValueError(f"signalgemm: load_only must be True or False, got {load_only!r}")
        for name, fmt in (("a", a_format), ("b", b_format)):
            if fp4_typed[name] and fmt not in ("nvfp4", "mxfp4"):  # its bytes would pass for another format's
                raise ValueError(f"signalgemm: {name} is float4_e2m1fn_x2 but its format is {fmt!r}")
        for name, t in (("a", a), ("b", b), ("out", out), ("masked_m", masked_m)):
            if t is None:
                raise ValueError(f"signalgemm: {name} is None; it must be a CUDA tensor")
        for name, t in (("a", a), ("sfa", sfa), ("b", b), ("sfb", sfb), ("out", out), ("masked_m", masked_m),
                        ("alpha", alpha), ("workspace", workspace)):
            _require_gpu(name, t)
        for name, fmt, sf in (("sfa", a_format, sfa), ("sfb", b_format, sfb)):
            if sf is None and fmt != "bf16" and not (name == "sfb" and b_n > 0):  # named as the caller passed it
                raise ValueError(f"signalgemm: {name} is None but format {fmt!r} has block scales")
        a, b = _float8_as_bytes(a, a_format, "data", "a"), _float8_as_bytes(b, b_format, "data", "b")
        sfa, sfb = _float8_as_bytes(sfa, a_format, "scales", "sfa"), _float8_as_bytes(sfb, b_format, "scales", "sfb")
        for name, t in (("signals", signals), ("error_flag", error_flag)):
            _require_gpu(name, t, pinned_ok=True)
        if workspace is None:
            out_n = out.shape[2] if len(getattr(out, "shape", ())) == 3 else 0  # else the extension names out
            workspace = _allocate_workspace(a, a_format, b_format, n=out_n, expected_m=expected_m or 0,
                                            block_m=block_m, block_n=block_n, stages=stages, cluster=cluster,
                                            sm_count=sm_count or 0, mma_fragments=b_n > 0)
            if signals is not None and not _is_cuda_torch(a) and _converts_activations(a, a_format, b_format):
                raise ValueError(
                    "signalgemm: workspace: a is not a torch tensor, so no workspace is allocated here, and this "
                    f"pairing's tile ({a_format} x {b_format}), hence what each counter counts, depends on one: pass "
                    "workspace= (a device buffer of workspace_bytes(...) bytes) or workspace=False, and the same "
                    "choice to signal_layout / expected_signals")
        _C.grouped_gemm(
            a, sfa, b, sfb, out, masked_m,
            a_format, b_format,
            alpha, signals, granularity, scope,
            sm_count or 0, expected_m or 0, block_m, block_n, stages, cluster,
            _current_stream(anchor) if stream is None else _stream_handle(stream),
            error_flag, workspace if workspace is not False else None, b_n, load_only, c_dtype or "",
        )
        return out_given  # FlashInfer's (m, n, l) view stays the caller's


def activation_workspace_bytes(num_experts: int, max_m: int, k: int, a_format: str, b_format: Optional[str] = None) -> int:
    """Bytes of the workspace in which a launch with these formats converts its activations (0: none used)."""
    _require_int32_options(num_experts=num_experts, max_m=max_m, k=k)
    a_format, b_format = _formats(a_format, b_format)
    return _C.activation_workspace_bytes(num_experts, max_m, k, a_format, b_format)


def workspace_bytes(num_experts: int, max_m: int, k: int, a_format: str, b_format: Optional[str] = None, *,
                    n: int = 0, expected_m: int = 0, block_m: int = 0, block_n: int = 0, stages: int = 0,
                    cluster: int = 0, sm_count: int = 0, mma_fragments: bool = False) -> int:
    """Bytes of the workspace a launch with these formats runs best with (converted activations, the
    16-byte tile counter of dynamic scheduling for fp8_block128 x fp8_block128, or, given ``n`` and
    with few tiles, the partial sums of a split of K, after the converted activations where a launch
    has both; else 0). The launch's tile options, ``sm_count`` and ``mma_fragments`` (packed weights)
    pick its tile and so the split: pass those the launch gives."""
    _require_int32_options(num_experts=num_experts, max_m=max_m, k=k, n=n, expected_m=expected_m, block_m=block_m,
                           block_n=block_n, stages=stages, cluster=cluster, sm_count=sm_count)
    if sm_count < 0:
        raise ValueError(f"signalgemm: sm_count must be >= 0 (0: all), got {sm_count}")
    a_format, b_format = _formats(a_format, b_format)
    return _C.workspace_bytes(num_experts, max_m, k, a_format, b_format, n, expected_m, block_m, block_n,
                              stages, cluster, sm_count, bool(mma_fragments))


def _converts_activations(a: Any, a_format: str, b_format: str) -> bool:
    """Whether a launch with these formats converts its activations in a workspace when given one."""
    shape = tuple(getattr(a, "shape", ()))
    if len(shape) != 3 or not all(isinstance(d, numbers.Integral) and d > 0 for d in shape):
        return False  # the extension names a's shape
    k = _elements_per_row(shape[2], a_format)
    return activation_workspace_bytes(shape[0], shape[1], k, a_format, b_format) > 0


def _allocate_workspace(a: Any, a_format: str, b_format: str, n: int = 0, expected_m: int = 0, block_m: int = 0,
                        block_n: int = 0, stages: int = 0, cluster: int = 0, sm_count: int = 0,
                        mma_fragments: bool = False) -> Any:
    """A torch workspace (torch's caching allocator: cheap, graph-safe)."""
    if not _is_cuda_torch(a) or a.dim() != 3:
        return None
    import torch

    k = _elements_per_row(a.shape[2], a_format)
    with torch.cuda.device(a.device):  # planned for the device the launch runs on, whatever the current one
        nbytes = workspace_bytes(a.shape[0], a.shape[1], k, a_format, b_format, n=n, expected_m=expected_m,
                                 block_m=block_m, block_n=block_n, stages=stages, cluster=cluster, sm_count=sm_count,
                                 mma_fragments=mma_fragments)
    return torch.empty(nbytes, dtype=torch.uint8, device=a.device) if nbytes > 0 else None


def signal_layout(num_experts: int, max_m: int, n: int, *, k: int = 0, expected_m: int = 0, block_m: int = 0,
                  block_n: int = 0, granularity: str = "per_expert", a_format: str = "fp8_block128",
                  b_format: Optional[str] = None, workspace: bool = True, stages: int = 0, cluster: int = 0,
                  mma_fragments: bool = False) -> dict:
    """Tile shape and counter count a launch with these sizes and formats uses (what a consumer waits
    on). ``k``: the launch's K; it may be left out (0) except where it picks the tile (weights
    dequantized in registers, fp8_block128 tokens in a workspace included: few decode tiles, or up to
    32 tokens per expert beside nvfp4 weights, with K <= 2048 against a longer K; then a ValueError
    asks for it);
    ``workspace``: whether the launch converts its activations in one (the default of
    ``grouped_gemm_nt_masked`` for torch inputs), which gives the one-format pairings (nvfp4²,
    mxfp4², mxfp8²) the tiles of bf16 activations; fp8_block128 x FP4 keeps its own tiles, planned
    with the workspace;
    ``block_m``, ``block_n``, ``stages``, ``cluster``: the launch's own, where it gives them (a tile given
    on one side is completed with one that fits the stages given); ``mma_fragments``:
    the weights are packed (``pack_mma_fragments``), whose kernels complete a tile given on one side
    only with tiles of their own. Planned for the current CUDA device (its shared memory per block):
    with several GPUs of different models, make the launch's device current first."""
    _require_int32_options(num_experts=num_experts, max_m=max_m, n=n, k=k, expected_m=expected_m, block_m=block_m,
                           block_n=block_n, stages=stages, cluster=cluster)
    a_format, b_format = _formats(a_format, b_format)
    _require_str("granularity", granularity)
    return _C.signal_layout(num_experts, max_m, n, expected_m, block_m, block_n, granularity, a_format,
                            b_format, k, bool(workspace), stages, cluster, bool(mma_fragments))


def expected_signals(masked_m: Sequence[int], *, n: int, max_m: int, k: int = 0, expected_m: int = 0,
                     block_m: int = 0, block_n: int = 0, granularity: str = "per_expert",
                     a_format: str = "fp8_block128", b_format: Optional[str] = None, workspace: bool = True,
                     stages: int = 0, cluster: int = 0, mma_fragments: bool = False) -> list:
    """Value each counter reaches, as a list indexed like the signals buffer.

    ``n`` and ``max_m`` are keyword-only: given in the wrong order they would yield another, smaller
    count, and a consumer waiting for it would read rows not yet written.

    masked_m is host data (a list, or a CPU tensor/array): the consumer side knows it from the
    dispatch; each value an integer in [0, max_m] (the kernel clamps a larger one and flags it, here
    it is a ValueError). Counters of experts with masked_m == 0 reach 0: nothing to wait for. Pass the
    launch's formats (and ``workspace``, and ``k`` where ``signal_layout`` asks for it) and the tile
    options it gives (``block_m``, ``block_n``, ``stages``, ``cluster``): they choose the tile, hence what
    each counter counts.
    """
    _require_int32_options(n=n, max_m=max_m)
    values = masked_m.tolist() if hasattr(masked_m, "tolist") else masked_m
    # Unordered collections (a set, a dict's keys) would give the experts' values in no defined order.
    if isinstance(values, (str, bytes, set, frozenset, dict)) or not hasattr(values, "__iter__"):
        raise ValueError(f"signalgemm: masked_m must be a sequence of integers, got {type(masked_m).__name__}")
    values = list(values)
    if any(isinstance(v, (list, tuple)) for v in values):
        raise ValueError("signalgemm: masked_m must be one-dimensional, one value per expert")
    for i, v in enumerate(values):  # host data: checked here (the kernel clamps and flags)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not float(v).is_integer() or not 0 <= v <= max_m:
            raise ValueError(f"signalgemm: masked_m[{i}] = {v} is not an integer in [0, max_m = {max_m}]")
    values = [int(v) for v in values]
    layout = signal_layout(len(values), max_m, n, k=k, expected_m=expected_m, block_m=block_m, block_n=block_n,
                           granularity=granularity, a_format=a_format, b_format=b_format, workspace=workspace,
                           stages=stages, cluster=cluster, mma_fragments=mma_fragments)
    return _C.expected_signals(values, max_m, n, layout["block_m"], layout["block_n"], granularity)


def quantize(x: Any, format: str, role: str = "a"):
    """Quantizes float32 x [E, rows, K] (numpy, or a CPU tensor via .numpy()), every value finite, like the C++
    reference.

    Returns (data uint8 [E, rows, K*bits/8], scales (float32 or uint8, flat, layout of
    docs/formats.md; None for bf16), global_scale float32 [E] (nvfp4; else ones)).
    role: "a" for activations, "b" for weights (fp8_block128 scales 1x128 vs 128x128).
    """
    import numpy as np

    _require_str("format", format)
    _require_str("role", role)
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    if np.iscomplexobj(x):
        raise ValueError("signalgemm: x must be real, got complex values")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"signalgemm: x must be [E, rows, K], got shape {tuple(x.shape)}")
    return _C.quantize(x, format, role)


def scales_from_flashinfer(sf: Any, num_experts: int, rows: int, k: int, sf_vec_size: int = 16):
    """FlashInfer's swizzled 128x4 block scales (what its NVFP4 / MX grouped_gemm_nt_masked takes) ->
    SignalGEMM's row-major uint8 [E, rows, k / sf_vec_size] (docs/formats.md).

    Lets FlashInfer users reuse their quantized checkpoints without re-quantizing. A CUDA torch tensor
    (its bytes, or the 6-d tensor FlashInfer's API takes) is converted on its GPU into a new CUDA
    tensor; anything else (numpy, CPU tensors) on the host into a numpy array.
    """
    import numpy as np

    _require_int32_options(num_experts=num_experts, rows=rows, k=k, sf_vec_size=sf_vec_size)
    if sf_vec_size < 1:
        raise ValueError(f"signalgemm: sf_vec_size must be >= 1, got {sf_vec_size}")
    if k % sf_vec_size:
        raise ValueError(f"signalgemm: k = {k} must be a multiple of sf_vec_size = {sf_vec_size}")
    cols = k // sf_vec_size
    if getattr(sf, "is_cuda", False):
        import torch

        if sf.element_size() != 1:
            raise ValueError(f"signalgemm: sf must hold one byte per scale, got {sf.dtype}")
        return _swizzled_to_rows(_swizzled_bytes(sf.view(torch.uint8), num_experts, rows, cols, "sf"), num_experts,
                                 rows, cols, "sf")
    if hasattr(sf, "detach"):  # a CPU torch tensor (uint8 or float8_e4m3fn): its bytes
        import torch

        if sf.element_size() != 1:
            raise ValueError(f"signalgemm: sf must hold one byte per scale, got {sf.dtype}")
        if sf.dim() == 6:  # FlashInfer's tensor, in either order: converted as on the GPU
            return _swizzled_to_rows(sf.detach().view(torch.uint8), num_experts, rows, cols, "sf").numpy()
        sf = sf.detach().contiguous().view(torch.uint8).numpy()
    sf = np.asarray(sf)
    if sf.dtype.itemsize != 1 or sf.dtype.kind not in "ui":  # bytes, not values to convert
        raise ValueError(f"signalgemm: sf must hold one byte per scale (uint8 or int8), got {sf.dtype}")
    return _C.scales_from_flashinfer(np.ascontiguousarray(sf).view(np.uint8).reshape(-1), num_experts, rows, cols)
