"""GPU tests of the Python module with torch tensors: results against a float64 torch reference,
untouched masked rows, signals, CUDA-graph capture. Skipped without torch or a Hopper GPU."""

import time

import numpy as np
import pytest

import signalgemm

torch = pytest.importorskip("torch")
if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
    pytest.skip("no Hopper (sm_90) GPU: skipped", allow_module_level=True)

POISON = -12345.0


def make_problem(experts, max_m, n, k, seed, dev="cuda"):
    rng = np.random.default_rng(seed)
    xa = rng.standard_normal((experts, max_m, k)).astype(np.float32)
    xb = (rng.standard_normal((experts, n, k)) * 0.05).astype(np.float32)
    a, sfa, _ = signalgemm.quantize(xa, "fp8_block128", "a")
    b, sfb, _ = signalgemm.quantize(xb, "fp8_block128", "b")
    t = dict(
        a=torch.from_numpy(a).to(dev).view(torch.float8_e4m3fn),
        sfa=torch.from_numpy(sfa).to(dev),
        b=torch.from_numpy(b).to(dev).view(torch.float8_e4m3fn),
        sfb=torch.from_numpy(sfb).to(dev),
        alpha=torch.from_numpy(rng.uniform(0.5, 2, experts).astype(np.float32)).to(dev),
    )
    # float64 reference from the dequantized operands (docs/formats.md layouts)
    pad = (max_m + 3) // 4 * 4
    sa = t["sfa"].double().view(experts, k // 128, pad)[:, :, :max_m].transpose(1, 2).repeat_interleave(128, 2)
    nb = (n + 127) // 128
    sb = t["sfb"].double().view(experts, nb, k // 128).repeat_interleave(128, 1)[:, :n].repeat_interleave(128, 2)
    deq_a = t["a"].double() * sa
    deq_b = t["b"].double() * sb
    t["reference"] = torch.einsum("emk,enk->emn", deq_a, deq_b) * t["alpha"].double().view(-1, 1, 1)
    return t


def check(out, reference, masked_m, tolerance=2e-3):
    for e, m in enumerate(masked_m.tolist()):
        got = out[e, :m].double()
        want = reference[e, :m]
        if m:
            assert (torch.linalg.norm(got - want) / torch.linalg.norm(want)).item() < tolerance, f"expert {e}"
        assert bool((out[e, m:] == POISON).all()), f"expert {e}: rows >= masked_m were written"


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("granularity", ["per_expert", "per_row_block"])
def test_matches_torch_reference_and_signals(granularity, out_dtype):
    E, MAX_M, N, K = 6, 96, 384, 512
    t = make_problem(E, MAX_M, N, K, seed=1)
    masked_m = torch.tensor([0, 1, 63, 64, 65, 96], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=out_dtype, device="cuda")
    layout = signalgemm.signal_layout(E, MAX_M, N, granularity=granularity)
    signals = torch.zeros(layout["counter_count"], dtype=torch.int32, device="cuda")
    signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"],
                                      dst_signals=signals, granularity=granularity)
    torch.cuda.synchronize()
    check(out, t["reference"], masked_m)
    expected = signalgemm.expected_signals(masked_m.cpu(), n=N, max_m=MAX_M, granularity=granularity)
    assert signals.cpu().tolist() == expected


@pytest.mark.parametrize("granularity", ["per_expert", "per_row_block"])
def test_signals_of_a_tile_completed_to_fit_the_stages(granularity):
    """block_n given with stages the heuristic's 128 rows do not fit: the launch runs 64 x 128, and the
    helpers, given the same options, count its tiles."""
    E, MAX_M, N, K = 3, 256, 512, 512
    t = make_problem(E, MAX_M, N, K, seed=7)
    masked_m = torch.tensor([0, 1, 201], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    layout = signalgemm.signal_layout(E, MAX_M, N, k=K, block_n=128, stages=6, granularity=granularity)
    assert (layout["block_m"], layout["block_n"]) == (64, 128)
    signals = torch.zeros(layout["counter_count"], dtype=torch.int32, device="cuda")
    signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"],
                                      signals=signals, granularity=granularity, block_n=128, stages=6)
    torch.cuda.synchronize()
    check(out, t["reference"], masked_m)
    expected = signalgemm.expected_signals(masked_m.cpu(), n=N, max_m=MAX_M, k=K, block_n=128, stages=6,
                                           granularity=granularity)
    assert signals.cpu().tolist() == expected


def test_pinned_host_counters_for_a_host_consumer():
    """Counters and the error flag in pinned host memory (scope "sys"): the host polls them without a
    synchronization until each reaches its expected value; a pageable host tensor is refused by name."""
    E, MAX_M, N, K = 5, 128, 512, 512
    t = make_problem(E, MAX_M, N, K, seed=6)
    masked_m = torch.tensor([128, 0, 1, 77, 129], dtype=torch.int32, device="cuda")  # 129 > max_m: clamped, flagged
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    signals = torch.zeros(signalgemm.signal_layout(E, MAX_M, N)["counter_count"], dtype=torch.int32).pin_memory()
    error_flag = torch.zeros(1, dtype=torch.int32).pin_memory()
    signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"],
                                      signals=signals, scope="sys", error_flag=error_flag)
    expected = signalgemm.expected_signals([128, 0, 1, 77, 128], n=N, max_m=MAX_M)
    deadline = time.monotonic() + 5
    while signals.tolist() != expected and time.monotonic() < deadline:
        time.sleep(1e-4)
    assert signals.tolist() == expected
    torch.cuda.synchronize()
    assert error_flag.item() == signalgemm.ERROR_MASKED_M_OUT_OF_RANGE
    check(out, t["reference"], masked_m.clamp(max=MAX_M))
    with pytest.raises(ValueError, match="signals is on cpu; it must be a CUDA tensor or pinned host memory"):
        signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m,
                                          signals=torch.zeros(E, dtype=torch.int32))


def test_views_of_larger_buffers():
    """Operands and output given as slices of larger tensors (padded rows and experts, the strides a user
    gets from slicing a buffer): the same results, and nothing written outside the output's view."""
    E, MAX_M, N, K = 3, 40, 264, 384
    t = make_problem(E, MAX_M, N, K, seed=4)

    def embedded(x, pad_rows, pad_k):  # x as the [:, :rows, :k] view of a larger buffer
        big = torch.zeros(x.shape[0], x.shape[1] + pad_rows, x.shape[2] + pad_k, dtype=torch.uint8, device="cuda")
        big[:, : x.shape[1], : x.shape[2]] = x.view(torch.uint8)
        return big.view(x.dtype)[:, : x.shape[1], : x.shape[2]]

    a, b = embedded(t["a"], 8, 128), embedded(t["b"], 24, 16)
    assert a.stride(1) == K + 128 and b.stride(0) == (N + 24) * (K + 16)
    big_out = torch.full((E, MAX_M + 5, N + 40), POISON, dtype=torch.bfloat16, device="cuda")
    out = big_out[:, :MAX_M, :N]
    masked_m = torch.tensor([40, 1, 27], dtype=torch.int32, device="cuda")
    signalgemm.grouped_gemm_nt_masked((a, t["sfa"]), (b, t["sfb"]), out, masked_m, alpha=t["alpha"])
    torch.cuda.synchronize()
    check(out, t["reference"], masked_m)
    assert bool((big_out[:, MAX_M:] == POISON).all()) and bool((big_out[:, :, N:] == POISON).all())


def test_load_only_launches_nothing():
    E, MAX_M, N, K = 3, 64, 256, 256
    t = make_problem(E, MAX_M, N, K, seed=4)
    masked_m = torch.tensor([5, 0, 64], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    signals = torch.zeros(E, dtype=torch.int32, device="cuda")
    args = ((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m)
    signalgemm.grouped_gemm_nt_masked(*args, alpha=t["alpha"], signals=signals, load_only=True)
    torch.cuda.synchronize()
    assert bool((out == POISON).all()) and signals.count_nonzero().item() == 0
    signalgemm.grouped_gemm_nt_masked(*args, alpha=t["alpha"], signals=signals)
    torch.cuda.synchronize()
    check(out, t["reference"], masked_m)
    assert signals.cpu().tolist() == signalgemm.expected_signals(masked_m.cpu(), n=N, max_m=MAX_M)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_runs_on_the_tensors_device_and_rejects_a_mix():
    E, MAX_M, N, K = 3, 64, 256, 256
    t = make_problem(E, MAX_M, N, K, seed=5, dev="cuda:1")
    masked_m = torch.tensor([64, 7, 0], dtype=torch.int32, device="cuda:1")
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda:1")
    torch.cuda.set_device(0)
    signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"])
    torch.cuda.synchronize(1)
    assert torch.cuda.current_device() == 0
    check(out, t["reference"], masked_m)
    out0 = torch.zeros((E, MAX_M, N), dtype=torch.bfloat16, device="cuda:0")
    with pytest.raises(ValueError, match="a.data is on device 1, the launch runs on device 0"):
        signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out0, masked_m.to("cuda:0"))
    with pytest.raises(ValueError, match="stream"):  # a stream of another device than the tensors'
        signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"],
                                          stream=torch.cuda.Stream(device=0))


def test_cuda_graph_capture_replays():
    E, MAX_M, N, K = 4, 64, 256, 256
    t = make_problem(E, MAX_M, N, K, seed=2)
    masked_m = torch.tensor([64, 3, 0, 40], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    signals = torch.zeros(E, dtype=torch.int32, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # warm-up on the side stream, as torch recommends before capture
        signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"])
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        signals.zero_()
        signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"],
                                          signals=signals)
    for _ in range(2):
        out.fill_(POISON)
        graph.replay()
        torch.cuda.synchronize()
        check(out, t["reference"], masked_m)
        assert signals.cpu().tolist() == signalgemm.expected_signals(masked_m.cpu(), n=N, max_m=MAX_M)


# A float16 out gets fp16's rounding (2^-11..2^-10 of the value): within ~2e-4 of the exact
# product, where bf16's would be ~1.5e-3 off.
@pytest.mark.parametrize("out_dtype,tolerance", [(torch.bfloat16, 2e-3), (torch.float16, 5e-4)])
def test_bf16_operands(out_dtype, tolerance):
    E, MAX_M, N, K = 3, 40, 256, 200
    gen = torch.Generator(device="cuda").manual_seed(3)
    a = torch.randn(E, MAX_M, K, device="cuda", generator=gen).bfloat16()
    b = (torch.randn(E, N, K, device="cuda", generator=gen) * 0.05).bfloat16()
    masked_m = torch.tensor([40, 0, 7], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=out_dtype, device="cuda")
    signalgemm.grouped_gemm_nt_masked((a, None), (b, None), out, masked_m, a_format="bf16")
    torch.cuda.synchronize()
    check(out, torch.einsum("emk,enk->emn", a.double(), b.double()), masked_m, tolerance)


E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]


def test_bf16_activations_with_nvfp4_weights():
    E, MAX_M, N, K = 3, 24, 256, 128
    rng = np.random.default_rng(5)
    xb = (rng.standard_normal((E, N, K)) * 0.05).astype(np.float32)
    b, sfb, global_scale = signalgemm.quantize(xb, "nvfp4", "b")
    a = torch.randn(E, MAX_M, K, device="cuda", generator=torch.Generator(device="cuda").manual_seed(6)).bfloat16()
    masked_m = torch.tensor([24, 0, 9], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    alpha = torch.from_numpy(global_scale).cuda()  # nvfp4's per-expert global scale goes into alpha
    signalgemm.grouped_gemm_nt_masked((a, None), (torch.from_numpy(b).cuda(), torch.from_numpy(sfb).cuda()), out,
                                      masked_m, a_format="bf16", b_format="nvfp4", alpha=alpha)
    torch.cuda.synchronize()
    # Decode the weights independently: low nibble first, one e4m3 scale per 16 along K.
    codes = torch.from_numpy(np.stack([b & 15, b >> 4], axis=-1).reshape(E, N, K).astype(np.int64))
    values = torch.tensor(E2M1, dtype=torch.float64)[codes]
    scales = torch.from_numpy(sfb.reshape(E, N, K // 16).copy()).view(torch.float8_e4m3fn).double()
    weights = values * scales.repeat_interleave(16, dim=2) * torch.from_numpy(global_scale).double().view(E, 1, 1)
    check(out, torch.einsum("emk,enk->emn", a.double().cpu(), weights).cuda(), masked_m)


@pytest.mark.parametrize("a_format,b_format", [("bf16", "nvfp4"), ("nvfp4", "nvfp4"), ("bf16", "mxfp4"),
                                               ("fp8_block128", "nvfp4"), ("fp8_block128", "mxfp4")])
def test_fp4_weights_packed_in_mma_fragment_order(a_format, b_format):
    """Weights packed once by pack_mma_fragments give the rows layout's output bit for bit (decode and
    wide tiles, a partial 64-row block and column block, K past a whole stage), and both match an
    independent float64 decoding (alpha 1: the nvfp4 global scales are left out on both sides)."""
    E, MAX_M, N, K = 4, 80, 328, 640 if a_format == "fp8_block128" else 576  # fp8: whole 128-K blocks
    rng = np.random.default_rng(17)
    qb, qsfb, _ = signalgemm.quantize((rng.standard_normal((E, N, K)) * 0.05).astype(np.float32), b_format, "b")
    b, sfb = torch.from_numpy(qb).cuda(), torch.from_numpy(qsfb).cuda()
    ones = np.ones(E, np.float32)
    if a_format == "bf16":
        gen = torch.Generator(device="cuda").manual_seed(18)
        a, sfa = torch.randn(E, MAX_M, K, device="cuda", generator=gen).bfloat16(), None
        deq_a = a.double().cpu()
    else:
        qa, qsfa, _ = signalgemm.quantize(rng.standard_normal((E, MAX_M, K)).astype(np.float32), a_format, "a")
        a, sfa = torch.from_numpy(qa).cuda(), torch.from_numpy(qsfa).cuda()
        deq_a = decode_operand(qa, qsfa, ones, a_format, "a", E, MAX_M, K)
    reference = torch.einsum("emk,enk->emn", deq_a, decode_operand(qb, qsfb, ones, b_format, "b", E, N, K)).cuda()
    packed = signalgemm.pack_mma_fragments(b, sfb)
    assert packed.data.shape == (E, 6, (K + 63) // 64, 2560) and (packed.n, packed.k) == (N, K)
    masked_m = torch.tensor([80, 0, 17, 33], dtype=torch.int32, device="cuda")
    for expected_m in (24, 0):
        outs = []
        for weights in (b, packed):
            out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
            signalgemm.grouped_gemm_nt_masked((a, sfa), (weights, sfb), out, masked_m, a_format=a_format,
                                              b_format=b_format, expected_m=expected_m)
            outs.append(out)
        torch.cuda.synchronize()
        assert torch.equal(outs[0], outs[1]), f"expected_m {expected_m}"
        check(outs[1], reference, masked_m)
    # The packed blocks carry the scales: none given beside them, the same output.
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    signalgemm.grouped_gemm_nt_masked((a, sfa), (packed, None), out, masked_m, a_format=a_format, b_format=b_format)
    torch.cuda.synchronize()
    assert torch.equal(out, outs[1])
    with pytest.raises(ValueError, match="sfb must be the"):
        signalgemm.pack_mma_fragments(b, sfb.reshape(-1)[:-16], b_format=b_format)
    with pytest.raises(ValueError, match="pass b_format"):
        signalgemm.pack_mma_fragments(b, sfb.reshape(-1)[:-16])


def decode_operand(data, scales, global_scale, fmt, role, experts, rows, k):
    """float64 values (element x block scale x nvfp4 global scale) of a quantized operand, decoded here
    from the bytes (docs/formats.md), independently of the C++ reference."""
    if fmt in ("nvfp4", "mxfp4"):
        codes = torch.from_numpy(np.stack([data & 15, data >> 4], axis=-1).reshape(experts, rows, k).astype(np.int64))
        values = torch.tensor(E2M1, dtype=torch.float64)[codes]
    else:  # e4m3
        values = torch.from_numpy(data.reshape(experts, rows, k).copy()).view(torch.float8_e4m3fn).double()
    if fmt == "fp8_block128":  # activations: fp32 [E][K/128][round_up(rows, 4)]
        pad = (rows + 3) // 4 * 4
        s = torch.from_numpy(scales.copy()).double().view(experts, k // 128, pad)[:, :, :rows].transpose(1, 2)
        return values * s.repeat_interleave(128, 2)
    block = 16 if fmt == "nvfp4" else 32
    raw = torch.from_numpy(scales.reshape(experts, rows, k // block).copy())
    if fmt == "nvfp4":
        s = raw.view(torch.float8_e4m3fn).double()
    else:  # e8m0: 2^(code - 127)
        s = torch.pow(2.0, raw.double() - 127)
    values = values * s.repeat_interleave(block, 2)
    return values * torch.from_numpy(global_scale).double().view(experts, 1, 1)


@pytest.mark.parametrize("a_format,b_format", [("mxfp8", "mxfp8"), ("mxfp4", "mxfp4"), ("nvfp4", "nvfp4"),
                                               ("bf16", "mxfp4"), ("bf16", "mxfp8"), ("fp8_block128", "nvfp4"),
                                               ("fp8_block128", "mxfp4")])
def test_dequantizing_pairings(a_format, b_format):
    """The dequantizing mainloop's pairings against an independent float64 decoding; alpha carries
    the nvfp4 global scales of both sides (as the caller must)."""
    E, MAX_M, N, K = 3, 70, 264, 256
    rng = np.random.default_rng(13)
    xa = rng.standard_normal((E, MAX_M, K)).astype(np.float32)
    xb = (rng.standard_normal((E, N, K)) * 0.05).astype(np.float32)
    b, sfb, gs_b = signalgemm.quantize(xb, b_format, "b")
    if a_format == "bf16":
        a_t = torch.from_numpy(xa).cuda().bfloat16()
        lhs, deq_a, gs_a = (a_t, None), a_t.double().cpu(), np.ones(E, np.float32)
    else:
        a, sfa, gs_a = signalgemm.quantize(xa, a_format, "a")
        lhs = (torch.from_numpy(a).cuda(), torch.from_numpy(sfa).cuda())
        deq_a = decode_operand(a, sfa, np.ones(E, np.float32), a_format, "a", E, MAX_M, K)
    deq_b = decode_operand(b, sfb, np.ones(E, np.float32), b_format, "b", E, N, K)
    alpha = torch.from_numpy((gs_a * gs_b).astype(np.float32)).cuda()
    masked_m = torch.tensor([70, 0, 33], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    signals = torch.zeros(E, dtype=torch.int32, device="cuda")
    signalgemm.grouped_gemm_nt_masked(lhs, (torch.from_numpy(b).cuda(), torch.from_numpy(sfb).cuda()), out, masked_m,
                                      a_format=a_format, b_format=b_format, alpha=alpha, signals=signals)
    torch.cuda.synchronize()
    reference = torch.einsum("emk,enk->emn", deq_a, deq_b) * alpha.double().cpu().view(-1, 1, 1)
    check(out, reference.cuda(), masked_m)
    assert signals.cpu().tolist() == signalgemm.expected_signals(masked_m.cpu(), n=N, max_m=MAX_M, k=K, a_format=a_format,
                                                                 b_format=b_format)
    if a_format == b_format:  # the activations were converted in a workspace; now inside the GEMM
        out.fill_(POISON)
        signals.zero_()
        signalgemm.grouped_gemm_nt_masked(lhs, (torch.from_numpy(b).cuda(), torch.from_numpy(sfb).cuda()), out,
                                          masked_m, a_format=a_format, b_format=b_format, alpha=alpha,
                                          signals=signals, workspace=False)
        torch.cuda.synchronize()
        check(out, reference.cuda(), masked_m)
        assert signals.cpu().tolist() == signalgemm.expected_signals(masked_m.cpu(), n=N, max_m=MAX_M, k=K, a_format=a_format,
                                                                     b_format=b_format, workspace=False)


def swizzle_128x4(row_major):
    """uint8 [E, rows, cols] -> FlashInfer's swizzled bytes in its physical order (E, rm, rk, 32, 4, 4),
    written with the documented offset formula (docs/formats.md), independently of the module."""
    experts, rows, cols = row_major.shape
    row_tiles, col_tiles = (rows + 127) // 128, (cols + 3) // 4
    swizzled = np.zeros((experts, row_tiles * col_tiles * 512), np.uint8)
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    offset = ((r // 128) * col_tiles + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4
    for e in range(experts):
        swizzled[e, offset] = row_major[e]
    return swizzled.reshape(experts, row_tiles, col_tiles, 32, 4, 4)


@pytest.mark.parametrize("fmt,ab_dtype,sf_dtype,sf_vec_size", [
    ("nvfp4", "float4_e2m1fn", "float8_e4m3fn", 16), ("mxfp4", "float4_e2m1fn", "float8_e8m0fnu", 32),
    ("mxfp8", "float8_e4m3fn", "float8_e8m0fnu", 32), ("fp8_block128", "float8_e4m3fn", "float32", 128)])
@pytest.mark.parametrize("scale_view", ["logical", "physical", "bytes"])
def test_flashinfer_calling_convention_matches_native(fmt, ab_dtype, sf_dtype, sf_vec_size, scale_view):
    """FlashInfer's call as its users write it ((m, k, l) views, swizzled scales as its 6-d tensors or as
    SGLang's 3-d [E, round_up(rows, 128), round_up(K / vec, 4)] bytes, its keywords) gives the native
    call's output and signals bit for bit."""
    E, MAX_M, N, K = 3, 72, 264, 256
    rng = np.random.default_rng(23)
    qa, qsfa, gs_a = signalgemm.quantize(rng.standard_normal((E, MAX_M, K)).astype(np.float32), fmt, "a")
    qb, qsfb, gs_b = signalgemm.quantize((rng.standard_normal((E, N, K)) * 0.05).astype(np.float32), fmt, "b")
    a, b = torch.from_numpy(qa).cuda(), torch.from_numpy(qb).cuda()
    sfa, sfb = torch.from_numpy(qsfa).cuda(), torch.from_numpy(qsfb).cuda()
    alpha = torch.from_numpy((gs_a * gs_b).astype(np.float32)).cuda()
    masked_m = torch.tensor([72, 0, 41], dtype=torch.int32, device="cuda")
    if fmt == "fp8_block128":  # not a FlashInfer format: its scales stay in SignalGEMM's layout
        fi_sfa, fi_sfb = sfa, sfb
    else:
        def flashinfer_scales(scales, rows):
            physical = torch.from_numpy(swizzle_128x4(scales.reshape(E, rows, K // sf_vec_size))).cuda()
            if scale_view == "bytes":  # SGLang's swizzle_blockscale shape
                return physical.reshape(E, physical.shape[1] * 128, physical.shape[2] * 4)
            return physical if scale_view == "physical" else physical.permute(3, 4, 1, 5, 2, 0)  # (32, 4, rm, 4, rk, l)
        fi_sfa, fi_sfb = flashinfer_scales(qsfa, MAX_M), flashinfer_scales(qsfb, N)
    outs, counters = [], []
    c_dtype = "float16" if fmt == "mxfp8" else "bfloat16"
    # The native call, FlashInfer's, and FlashInfer's with weights packed by pack_mma_fragments (FP4).
    for flashinfer in (False, True, "packed") if fmt in ("nvfp4", "mxfp4") else (False, True):
        out = torch.full((E, MAX_M, N), POISON, dtype=getattr(torch, c_dtype), device="cuda")
        signals = torch.zeros(E, dtype=torch.int32, device="cuda")
        if flashinfer:  # (m, k, l), (n, k, l), (m, n, l): views of the same [E, rows, cols] memory
            weights = (signalgemm.pack_mma_fragments(b, fi_sfb, b_format=fmt, swizzled=True) if flashinfer == "packed"
                       else b.permute(1, 2, 0))
            tokens = a.view(torch.float4_e2m1fn_x2) if ab_dtype == "float4_e2m1fn" else a  # torch's FP4 dtype
            out_mnl = out.permute(1, 2, 0)
            returned = signalgemm.grouped_gemm_nt_masked(
                (tokens.permute(1, 2, 0), fi_sfa), (weights, fi_sfb), out_mnl, masked_m,
                ab_dtype=ab_dtype, sf_dtype=sf_dtype, c_dtype=c_dtype, sf_vec_size=sf_vec_size,
                mma_tiler_mn=(128, 128), cluster_shape_mn=(1, 1), alpha=alpha, alpha_dtype="float32",
                dst_signals=signals, sm_count=100)
            assert returned is out_mnl  # as FlashInfer's: the out it was given, in its (m, n, l) view
        else:
            signalgemm.grouped_gemm_nt_masked((a, sfa), (b, sfb), out, masked_m, a_format=fmt, block_m=128,
                                              block_n=128, alpha=alpha, signals=signals, sm_count=100)
        outs.append(out)
        counters.append(signals)
    torch.cuda.synchronize()
    for out, signals in zip(outs[1:], counters[1:]):
        assert torch.equal(outs[0], out)
        assert torch.equal(counters[0], signals)
    if fmt != "fp8_block128":  # (decode_operand reads fp8_block128 scales as the activations' only)
        reference = torch.einsum("emk,enk->emn", decode_operand(qa, qsfa, gs_a, fmt, "a", E, MAX_M, K),
                                 decode_operand(qb, qsfb, gs_b, fmt, "b", E, N, K))
        check(outs[1], reference.cuda(), masked_m)


def test_flashinfer_convention_takes_one_expert_views_with_a_unit_last_stride():
    """One expert's (m, k, 1) tensors made contiguous in that shape (strides (k, 1, 1), not views of
    [1, m, k] memory) are FlashInfer's order too: the same output and signals as the native call."""
    MAX_M, N, K = 40, 136, 256
    rng = np.random.default_rng(31)
    qa, qsfa, gs_a = signalgemm.quantize(rng.standard_normal((1, MAX_M, K)).astype(np.float32), "nvfp4", "a")
    qb, qsfb, gs_b = signalgemm.quantize((rng.standard_normal((1, N, K)) * 0.05).astype(np.float32), "nvfp4", "b")
    a, b = torch.from_numpy(qa).cuda(), torch.from_numpy(qb).cuda()
    sfa, sfb = torch.from_numpy(qsfa).cuda(), torch.from_numpy(qsfb).cuda()
    alpha = torch.from_numpy((gs_a * gs_b).astype(np.float32)).cuda()
    masked_m = torch.tensor([33], dtype=torch.int32, device="cuda")
    native = torch.full((1, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    native_signals = torch.zeros(1, dtype=torch.int32, device="cuda")
    signalgemm.grouped_gemm_nt_masked((a, sfa), (b, sfb), native, masked_m, a_format="nvfp4", alpha=alpha,
                                      signals=native_signals)
    out = torch.full((MAX_M, N, 1), POISON, dtype=torch.bfloat16, device="cuda")
    signals = torch.zeros(1, dtype=torch.int32, device="cuda")
    fi_sfa = torch.from_numpy(swizzle_128x4(qsfa.reshape(1, MAX_M, K // 16))).cuda()
    fi_sfb = torch.from_numpy(swizzle_128x4(qsfb.reshape(1, N, K // 16))).cuda()
    assert a[0].unsqueeze(-1).stride() == (K // 2, 1, 1)
    signalgemm.grouped_gemm_nt_masked((a[0].unsqueeze(-1), fi_sfa), (b[0].unsqueeze(-1), fi_sfb), out, masked_m,
                                      ab_dtype="float4_e2m1fn", sf_dtype="float8_e4m3fn", sf_vec_size=16,
                                      alpha=alpha, dst_signals=signals)
    torch.cuda.synchronize()
    assert torch.equal(native[0], out[:, :, 0])
    assert torch.equal(native_signals, signals)
    reference = torch.einsum("emk,enk->emn", decode_operand(qa, qsfa, gs_a, "nvfp4", "a", 1, MAX_M, K),
                             decode_operand(qb, qsfb, gs_b, "nvfp4", "b", 1, N, K))
    check(native, reference.cuda(), masked_m)


def test_flashinfer_convention_names_scales_that_are_not_swizzled_bytes():
    """With ab_dtype a scale tensor is FlashInfer's swizzled bytes, as FlashInfer reads it: SignalGEMM's
    row-major scales (of another size here) are named, not misread."""
    E, MAX_M, N, K = 2, 72, 264, 256
    a = torch.randint(0, 256, (E, MAX_M, K // 2), dtype=torch.uint8, device="cuda")
    b = torch.randint(0, 256, (E, N, K // 2), dtype=torch.uint8, device="cuda")
    sfa = torch.randint(0, 256, (E, MAX_M, K // 16), dtype=torch.uint8, device="cuda")  # row-major
    sfb = torch.from_numpy(swizzle_128x4(np.full((E, N, K // 16), 0x38, np.uint8))).cuda()
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    masked_m = torch.tensor([72, 5], dtype=torch.int32, device="cuda")
    with pytest.raises(ValueError, match="sfa must be FlashInfer's swizzled 128x4 scales"):
        signalgemm.grouped_gemm_nt_masked((a, sfa), (b, sfb), out, masked_m, ab_dtype="float4_e2m1fn",
                                          sf_dtype="float8_e4m3fn", sf_vec_size=16)


def test_scales_from_flashinfer_on_the_gpu():
    """A CUDA tensor is converted on its GPU, as the host path converts its bytes."""
    rows, cols, experts = 200, 7, 3  # k = 112 for sf_vec_size 16; partial row and column tiles
    rng = np.random.default_rng(29)
    swizzled = swizzle_128x4(rng.integers(0, 256, (experts, rows, cols), dtype=np.uint8))
    on_host = signalgemm.scales_from_flashinfer(swizzled, experts, rows, 112)
    flat = torch.from_numpy(swizzled.reshape(-1)).cuda()
    for sf in (flat, flat.view(torch.float8_e4m3fn), flat.reshape(swizzled.shape).permute(3, 4, 1, 5, 2, 0)):
        on_gpu = signalgemm.scales_from_flashinfer(sf, experts, rows, 112)
        assert on_gpu.is_cuda and on_gpu.dtype == torch.uint8
        assert np.array_equal(on_gpu.cpu().numpy(), on_host)
    # The same tensors on the CPU (FlashInfer's logical 6-d view too) are converted alike, on the host.
    for sf in (flat.cpu(), flat.reshape(swizzled.shape).permute(3, 4, 1, 5, 2, 0).cpu()):
        assert np.array_equal(signalgemm.scales_from_flashinfer(sf, experts, rows, 112), on_host)


def test_mn_major_activation_scales_and_a_stream_object():
    """fp8_block128 sfa as DeepGEMM's MN-major view (logical [E, max_m, K/128], the rows contiguous) and
    the stream as a torch.cuda.Stream: the same results as the flat scales on the current stream."""
    E, MAX_M, N, K = 3, 64, 256, 384
    t = make_problem(E, MAX_M, N, K, seed=6)
    sfa_view = t["sfa"].view(E, K // 128, MAX_M).transpose(1, 2)
    assert sfa_view.shape == (E, MAX_M, K // 128) and sfa_view.stride(1) == 1
    masked_m = torch.tensor([64, 3, 0], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # out's fill and the operands first
    signalgemm.grouped_gemm_nt_masked((t["a"], sfa_view), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"],
                                      stream=stream)
    stream.synchronize()
    check(out, t["reference"], masked_m)


def test_temporaries_follow_an_explicit_stream():
    """With stream= (a raw handle here), the call's workspace and converted FlashInfer scales are
    allocated and written in that stream's order: torch reusing their memory on its current stream right
    after the call (while the GEMM may still run on the other stream) cannot corrupt the result."""
    E, MAX_M, N, K = 4, 64, 256, 512
    t = make_problem(E, MAX_M, N, K, seed=8)
    masked_m = torch.tensor([64, 17, 0, 33], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    for _ in range(3):
        signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"],
                                          stream=stream.cuda_stream)
        # The size of the fp8 tile counter's block: freed on return, it must not come back here at once.
        scratch = torch.empty(512, dtype=torch.uint8, device="cuda")  # on the current stream
        scratch.fill_(0xA5)
    stream.synchronize()
    torch.cuda.synchronize()
    check(out, t["reference"], masked_m)


def test_float8_tensors_pass_where_torch_cannot_export_them(monkeypatch):
    """A torch without DLPack's float8 codes: float8 operands go as their bytes, their dtype checked here."""
    monkeypatch.setattr(signalgemm, "_torch_exports_float8", lambda: False)
    E, MAX_M, N, K = 3, 64, 256, 256
    t = make_problem(E, MAX_M, N, K, seed=8)
    masked_m = torch.tensor([64, 0, 33], dtype=torch.int32, device="cuda")
    out = torch.full((E, MAX_M, N), POISON, dtype=torch.bfloat16, device="cuda")
    signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m, alpha=t["alpha"])
    torch.cuda.synchronize()
    check(out, t["reference"], masked_m)
    with pytest.raises(ValueError, match="a is torch.float8_e5m2, which does not hold the data of format fp8_block128"):
        signalgemm.grouped_gemm_nt_masked((t["a"].view(torch.float8_e5m2), t["sfa"]), (t["b"], t["sfb"]), out,
                                          masked_m)


def test_dtypes_that_would_be_misread_are_refused():
    """Tensors whose bytes would pass for another format's are refused, naming the argument."""
    E, MAX_M, N, K = 2, 64, 256, 256
    t = make_problem(E, MAX_M, N, K, seed=7)
    out = torch.empty((E, MAX_M, N), dtype=torch.bfloat16, device="cuda")
    masked_m = torch.full((E,), MAX_M, dtype=torch.int32, device="cuda")
    fp4 = torch.zeros((E, MAX_M, K // 2), dtype=torch.uint8, device="cuda").view(torch.float4_e2m1fn_x2)
    with pytest.raises(ValueError, match="a is float4_e2m1fn_x2 but its format is 'mxfp8'"):
        signalgemm.grouped_gemm_nt_masked((fp4, t["sfa"]), (t["b"], t["sfb"]), out, masked_m, a_format="mxfp8")
    with pytest.raises(ValueError, match="signals must be a contiguous 1-D int32/uint32"):
        signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m,
                                          signals=torch.zeros(E, dtype=torch.float32, device="cuda"))
    with pytest.raises(ValueError, match="sfa is on cpu"):
        signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"].cpu()), (t["b"], t["sfb"]), out, masked_m)
    with pytest.raises(TypeError, match="FP4 bytes"):
        signalgemm.pack_mma_fragments(torch.zeros((E, N, K // 2), dtype=torch.bfloat16, device="cuda"), t["sfb"])
    # The workspace must not alias what the launch reads.
    with pytest.raises(ValueError, match="workspace overlaps a.data"):
        signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), out, masked_m,
                                          workspace=t["a"].view(torch.uint8).reshape(-1))
