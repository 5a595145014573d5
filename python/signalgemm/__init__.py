"""SignalGEMM: masked grouped GEMM with completion signals for NVIDIA Hopper.

Takes any DLPack tensor (torch tensors directly, no copies) and launches on the caller's current
CUDA stream: torch's current stream when the output is a torch tensor, else the default stream,
unless ``stream`` is given. Argument names follow FlashInfer's ``grouped_gemm_nt_masked`` where
they mean the same thing (``dst_signals`` is accepted for ``signals``).
"""

from __future__ import annotations

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
    "ERROR_MASKED_M_OUT_OF_RANGE",
]

ERROR_MASKED_M_OUT_OF_RANGE = _C.ERROR_MASKED_M_OUT_OF_RANGE


def _current_stream(tensor: Any) -> int:
    """The CUDA stream handle to launch on for this tensor (0: the default stream)."""
    try:
        import torch  # torch is optional: only used when the caller passes torch tensors
    except ImportError:
        return 0
    if isinstance(tensor, torch.Tensor) and tensor.is_cuda:
        return torch.cuda.current_stream(tensor.device).cuda_stream
    return 0


def _as_pair(value: Any, name: str) -> Tuple[Any, Any]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    raise TypeError(f"signalgemm: {name} must be a pair (data, scales); use (data, None) for bf16")


class MmaFragments:
    """FP4 weights (nvfp4, mxfp4) rearranged once by ``pack_mma_fragments`` (docs/formats.md, the mma_fragments
    layout): pass it as the weights of ``rhs`` with its unchanged scales, ``rhs=(packed, sfb)``.
    ``data``: uint8 [E, ceil(N/64), ceil(K/64), 2048]; ``n``, ``k``: the weights' logical sizes."""

    __slots__ = ("data", "n", "k")

    def __init__(self, data: Any, n: int, k: int):
        if int(n) < 1 or int(k) < 1:
            raise ValueError(f"signalgemm: MmaFragments needs n and k >= 1, got n = {n}, k = {k}")
        self.data, self.n, self.k = data, int(n), int(k)


def pack_mma_fragments(b: Any, *, stream: Optional[int] = None) -> MmaFragments:
    """Rearranges FP4 weights b (nvfp4 or mxfp4 bytes, uint8 [E, N, K/2] on the GPU, torch) into the
    mma_fragments layout, once, at load time: the GEMM then dequantizes them with fewer instructions
    (bf16 activations, or ones of the weights' format or fp8_block128 with the default workspace),
    with bit-identical results."""
    import torch

    if not isinstance(b, torch.Tensor) or not b.is_cuda or b.dim() != 3:
        raise TypeError("signalgemm: pack_mma_fragments takes a CUDA torch tensor [E, N, K/2] of FP4 bytes")
    experts, n, k = b.shape[0], b.shape[1], b.shape[2] * 2
    packed = torch.empty((experts, (n + 63) // 64, (k + 63) // 64, 2048), dtype=torch.uint8, device=b.device)
    _C.pack_mma_fragments(b.view(torch.uint8), packed, _current_stream(b) if stream is None else int(stream))
    return MmaFragments(packed, n, k)


def grouped_gemm_nt_masked(
    lhs: Tuple[Any, Any],
    rhs: Tuple[Any, Any],
    out: Any,
    masked_m: Any,
    *,
    a_format: str = "fp8_block128",
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
) -> Any:
    """out[e, i, :] = alpha[e] * A[e, i, :] @ B[e].T for i < masked_m[e]; returns ``out``.

    lhs = (a, sfa): a [E, max_m, K] (fp8: one byte per element; fp4: [E, max_m, K/2] packed),
    rhs = (b, sfb): b [E, N, K] (or FP4 weights packed by ``pack_mma_fragments``), scales in the
    layouts of docs/formats.md; out bf16 or fp16 [E, max_m, N] (bf16 with fp8_block128 x FP4);
    masked_m int32 [E] on the GPU. ``signals`` (uint32/int32 [counter_count]) receives one release
    add per finished tile; ``expected_signals`` gives the values the counters reach.

    ``workspace`` (a device tensor of ``workspace_bytes`` bytes; None allocates it with torch for
    torch inputs, False runs without): nvfp4, mxfp4 or mxfp8 on both sides, or fp8_block128 x nvfp4 / mxfp4,
    convert their activations to bf16 there once (without: once per column block, slower);
    fp8_block128 x fp8_block128 keeps a tile counter there, from which the CTAs take tiles
    dynamically.

    ``load_only=True`` loads the kernels this call would launch and returns without launching: call it
    once before a consumer first spins beside the launch (under CUDA's default lazy module loading, a
    kernel's first launch may wait for the device to go idle; docs/signals.md).
    """
    if signals is not None and dst_signals is not None:
        raise ValueError("signalgemm: pass signals or dst_signals, not both")
    signals = signals if signals is not None else dst_signals
    a, sfa = _as_pair(lhs, "lhs")
    b, sfb = _as_pair(rhs, "rhs")
    b_n = 0
    if isinstance(b, MmaFragments):  # packed FP4 weights: the layout says N, the data not
        b, b_n = b.data, b.n
    if sm_count is not None and sm_count < 1:
        raise ValueError(f"signalgemm: sm_count must be >= 1, got {sm_count}")
    b_format = b_format or a_format
    if workspace is None:
        workspace = _allocate_workspace(a, a_format, b_format, n=out.shape[2] if hasattr(out, "shape") else 0,
                                        expected_m=expected_m or 0, block_m=block_m, block_n=block_n)
    _C.grouped_gemm(
        a, sfa, b, sfb, out, masked_m,
        a_format, b_format,
        alpha, signals, granularity, scope,
        sm_count or 0, expected_m or 0, block_m, block_n, stages, cluster,
        _current_stream(out) if stream is None else int(stream),
        error_flag, workspace if workspace is not False else None, b_n, load_only,
    )
    return out


def activation_workspace_bytes(num_experts: int, max_m: int, k: int, a_format: str, b_format: Optional[str] = None) -> int:
    """Bytes of the workspace in which a launch with these formats converts its activations (0: none used)."""
    return _C.activation_workspace_bytes(num_experts, max_m, k, a_format, b_format or a_format)


def workspace_bytes(num_experts: int, max_m: int, k: int, a_format: str, b_format: Optional[str] = None, *,
                    n: int = 0, expected_m: int = 0, block_m: int = 0, block_n: int = 0) -> int:
    """Bytes of the workspace a launch with these formats runs best with (converted activations, the
    16-byte tile counter of dynamic scheduling for fp8_block128 x fp8_block128, or, given ``n`` and
    with few tiles, the partial sums of a split of K, after the converted activations where a launch
    has both; else 0)."""
    return _C.workspace_bytes(num_experts, max_m, k, a_format, b_format or a_format, n, expected_m, block_m, block_n)


def _allocate_workspace(a: Any, a_format: str, b_format: str, n: int = 0, expected_m: int = 0, block_m: int = 0,
                        block_n: int = 0) -> Any:
    """A torch workspace (torch's caching allocator: cheap, graph-safe)."""
    try:
        import torch
    except ImportError:
        return None
    if not isinstance(a, torch.Tensor) or not a.is_cuda or a.dim() != 3:
        return None
    k = a.shape[2] * (2 if a_format in ("nvfp4", "mxfp4") else 1)
    nbytes = workspace_bytes(a.shape[0], a.shape[1], k, a_format, b_format, n=n, expected_m=expected_m,
                             block_m=block_m, block_n=block_n)
    return torch.empty(nbytes, dtype=torch.uint8, device=a.device) if nbytes > 0 else None


def signal_layout(num_experts: int, max_m: int, n: int, *, expected_m: int = 0, block_m: int = 0,
                  block_n: int = 0, granularity: str = "per_expert", a_format: str = "fp8_block128",
                  b_format: Optional[str] = None, workspace: bool = True) -> dict:
    """Tile shape and counter count a launch with these sizes and formats uses (what a consumer waits
    on). ``workspace``: whether the launch converts its activations in one (the default of
    ``grouped_gemm_nt_masked`` for torch inputs), which gives it the tiles of bf16 activations."""
    return _C.signal_layout(num_experts, max_m, n, expected_m, block_m, block_n, granularity, a_format,
                            b_format or a_format, 0, bool(workspace))


def expected_signals(masked_m: Sequence[int], n: int, max_m: int, *, expected_m: int = 0, block_m: int = 0,
                     block_n: int = 0, granularity: str = "per_expert", a_format: str = "fp8_block128",
                     b_format: Optional[str] = None, workspace: bool = True) -> list:
    """Value each counter reaches, as a list indexed like the signals buffer.

    masked_m is host data (a list, or a CPU tensor/array): the consumer side knows it from the
    dispatch; each value an integer in [0, max_m] (the kernel clamps a larger one and flags it, here
    it is a ValueError). Counters of experts with masked_m == 0 reach 0: nothing to wait for. Pass the
    launch's formats (and ``workspace``): they choose the tile, hence what each counter counts.
    """
    values = list(masked_m.tolist() if hasattr(masked_m, "tolist") else masked_m)
    for i, v in enumerate(values):  # host data: checked here (the kernel clamps and flags)
        if isinstance(v, bool) or not float(v).is_integer() or not 0 <= v <= max_m:
            raise ValueError(f"signalgemm: masked_m[{i}] = {v} is not an integer in [0, max_m = {max_m}]")
    values = [int(v) for v in values]
    layout = signal_layout(len(values), max_m, n, expected_m=expected_m, block_m=block_m, block_n=block_n,
                           granularity=granularity, a_format=a_format, b_format=b_format, workspace=workspace)
    return _C.expected_signals(values, max_m, n, layout["block_m"], layout["block_n"], granularity)


def quantize(x: Any, format: str, role: str = "a"):
    """Quantizes float32 x [E, rows, K] (numpy, or a CPU tensor via .numpy()) like the C++ reference.

    Returns (data uint8 [E, rows, K*bits/8], scales (float32 or uint8, flat, layout of
    docs/formats.md; None for bf16), global_scale float32 [E] (nvfp4; else ones)).
    role: "a" for activations, "b" for weights (fp8_block128 scales 1x128 vs 128x128).
    """
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return _C.quantize(np.ascontiguousarray(x, dtype=np.float32), format, role)


def scales_from_flashinfer(sf: Any, num_experts: int, rows: int, k: int, sf_vec_size: int = 16):
    """FlashInfer's swizzled 128x4 block scales (what its NVFP4 grouped_gemm_nt_masked takes) ->
    SignalGEMM's row-major uint8 [E, rows, k / sf_vec_size] (docs/formats.md), on the host.

    Lets FlashInfer users reuse their quantized checkpoints without re-quantizing.
    """
    import numpy as np

    if hasattr(sf, "detach"):  # a torch tensor (uint8 or float8_e4m3fn): its bytes, on the host
        import torch

        sf = sf.detach().cpu().contiguous().view(torch.uint8).numpy()
    sf = np.asarray(sf)
    if sf.dtype.itemsize != 1 or sf.dtype.kind not in "ui":  # bytes, not values to convert
        raise ValueError(f"signalgemm: sf must hold one byte per scale (uint8 or int8), got {sf.dtype}")
    if sf_vec_size < 1:
        raise ValueError(f"signalgemm: sf_vec_size must be >= 1, got {sf_vec_size}")
    if k % sf_vec_size:
        raise ValueError(f"signalgemm: k = {k} must be a multiple of sf_vec_size = {sf_vec_size}")
    return _C.scales_from_flashinfer(np.ascontiguousarray(sf).view(np.uint8).reshape(-1), num_experts, rows,
                                     k // sf_vec_size)
