"""CPU-only tests of the Python module: argument validation (through DLPack tensors that claim a
CUDA device), the signal contract, and the quantizers against an independent numpy decoding of
the documented layouts (docs/formats.md)."""

import re

import numpy as np
import pytest

import signalgemm
from fake_dlpack import FakeCudaTensor

E, MAX_M, N, K = 4, 64, 256, 512


class FakeManagedTensor(FakeCudaTensor):
    """DLPack's CUDA managed memory (device type 13): the C++ API takes it, the extension's operands do not."""

    def __dlpack_device__(self):
        return (13, 0)


def operands(**override):
    args = dict(
        a=FakeCudaTensor((E, MAX_M, K), address=0x7F0000000000),
        sfa=FakeCudaTensor((E * (K // 128) * MAX_M,), "float", 32, address=0x7F0001000000),
        b=FakeCudaTensor((E, N, K), address=0x7F0002000000),
        sfb=FakeCudaTensor((E * (N // 128) * (K // 128),), "float", 32, address=0x7F0003000000),
        out=FakeCudaTensor((E, MAX_M, N), "bfloat", 16, address=0x7F0004000000),
        masked_m=FakeCudaTensor((E,), "int", 32, address=0x7F0005000000),
    )
    args.update(override)
    return args


def call(**override):
    kwargs = {k: override.pop(k) for k in list(override) if k not in ("a", "sfa", "b", "sfb", "out", "masked_m")}
    t = operands(**override)
    return signalgemm.grouped_gemm_nt_masked((t["a"], t["sfa"]), (t["b"], t["sfb"]), t["out"], t["masked_m"], **kwargs)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(a_format="fp7"), "a_format"),
        (dict(out=FakeCudaTensor((E, MAX_M, N), "float", 32)), "out must be bfloat16"),
        (dict(masked_m=FakeCudaTensor((E,), "int", 64)), "masked_m must be int32"),
        (dict(out=FakeCudaTensor((E, MAX_M, N + 8), "bfloat", 16)), "out must be [E, max_m, N]"),
        (dict(out=FakeCudaTensor((E * MAX_M, N), "bfloat", 16)), "out must have 3 dimensions"),
        (dict(b=FakeCudaTensor((E + 1, N, K))), "same number of experts"),
        (dict(b=FakeCudaTensor((E, N, K + 128))), "same K"),
        (dict(a=FakeCudaTensor((E, MAX_M, 200)), b=FakeCudaTensor((E, N, 200))), "k = 200"),
        (dict(a=FakeCudaTensor((E, MAX_M, K), address=0x7F0000000008)), "a.data"),
        (dict(sfb=None), "sfb is None but format 'fp8_block128' has block scales"),
        (dict(a_format="nvfp4", b_format="fp8_block128", a=FakeCudaTensor((E, MAX_M, K // 2)),
              sfa=FakeCudaTensor((E * MAX_M * K // 16,), "uint", 8)), "not supported"),
        # Scale tensors: dtype, a flat layout, and the documented size.
        (dict(sfa=FakeCudaTensor((E * (K // 128) * MAX_M,), "bfloat", 16)), "sfa must be float32"),
        (dict(sfb=FakeCudaTensor((E * (N // 128) * (K // 128) - 1,), "float", 32)), "sfb holds 124 bytes"),
        (dict(sfa=FakeCudaTensor((E * (K // 128) * MAX_M,), "float", 32, strides=(2,))), "sfa must be contiguous"),
        # Shaped scales must have the documented shape: fp8_block128's sfa is [E, K/128, round_up(max_m, 4)],
        # so the natural [E, max_m, K/128] (as many bytes) is refused, not misread, where max_m != K/128 (where they
        # are equal the shapes cannot tell the two apart: docs/formats.md); likewise a 2-d view.
        (dict(sfa=FakeCudaTensor((E, MAX_M, K // 128), "float", 32)), "sfa has shape [4, 64, 4]"),
        (dict(sfa=FakeCudaTensor((E * (K // 128), MAX_M), "float", 32)), "sfa has shape [16, 64]"),
        (dict(sfb=FakeCudaTensor((E, K // 128, N // 128), "float", 32)), "sfb has shape [4, 4, 2]"),
        # DeepGEMM's MN-major view with its rows not padded to 4 in the strides is not the documented memory.
        (dict(a=FakeCudaTensor((E, MAX_M - 2, K)), out=FakeCudaTensor((E, MAX_M - 2, N), "bfloat", 16),
              sfa=FakeCudaTensor((E, MAX_M - 2, K // 128), "float", 32,
                                 strides=((MAX_M - 2) * (K // 128), 1, MAX_M - 2))), "sfa has shape [4, 62, 4]"),
        # Counters and flags the kernel adds to must be 32-bit integers, not floats of that size.
        (dict(signals=FakeCudaTensor((E,), "float", 32)), "signals must be a contiguous 1-D int32/uint32"),
        (dict(error_flag=FakeCudaTensor((1,), "float", 32)), "error_flag must be an int32"),
        # Element dtypes beyond their size, and strides the C++ API cannot express.
        (dict(a_format="bf16", b_format="bf16", sfa=None, sfb=None, a=FakeCudaTensor((E, MAX_M, K), "float", 16),
              b=FakeCudaTensor((E, N, K), "bfloat", 16)), "a must be bfloat16"),
        (dict(b=FakeCudaTensor((E, N, K), 12, 8)), "b must be float8_e4m3fn, uint8 or int8"),
        (dict(b=FakeCudaTensor((E, N, K), strides=(0, K, 1))), "b has stride 0 in dimension 0"),
        (dict(out=FakeCudaTensor((E, MAX_M, N), "bfloat", 16, strides=(MAX_M * N, 0, 1))), "out has stride 0"),
        (dict(alpha=FakeCudaTensor((E,), "float", 32, strides=(2,))), "alpha must be contiguous"),
        (dict(alpha=FakeCudaTensor((1, E + 1), "float", 32)), "alpha must be a contiguous float32 of E elements"),
        (dict(granularity="sometimes", signals=FakeCudaTensor((E,), "uint", 32)), "granularity"),
        (dict(scope="planet"), "scope"),
        (dict(signals=FakeCudaTensor((E - 1,), "uint", 32)), "needs 4"),
        (dict(sm_count=0), "sm_count"),
        # Integer options of another type or past int32, and missing block scales, named as passed.
        (dict(sm_count="4"), "sm_count must be an integer, got str"),
        (dict(expected_m=2**40), "expected_m = 1099511627776 is out of range"),
        (dict(sfa=None), "sfa is None but format 'fp8_block128' has block scales"),
        # Size-1 dimensions' strides are not looked at (exporters set them freely).
        (dict(masked_m=FakeCudaTensor((E,), "int", 32, strides=(2,))), "masked_m must be contiguous"),
        (dict(block_m=48), "config.block_m"),
        # None for a tile option means not given, as 0 does (here it reaches the launch's own checks).
        (dict(block_m=None, block_n=None, stages=None, cluster=None, sm_count=0), "sm_count"),
        (dict(stream=-1), "stream must be a CUDA stream"),
        (dict(stream=1.5), "stream must be a CUDA stream"),
        (dict(stream=type("S", (), {"cuda_stream": -5})()), "stream must be a CUDA stream"),
        (dict(mma_tiler_mn=128), "mma_tiler_mn must be a pair of integers"),
        (dict(cluster_shape_mn=("a", "b")), "cluster_shape_mn must be a pair of integers"),
        (dict(a=FakeCudaTensor((E, MAX_M, K), strides=(MAX_M * K, K, 2))), "contiguous in its last dimension"),
        # Required tensors and string options of the wrong kind, named (not the extension's signature).
        (dict(out=None), "out is None"),
        (dict(masked_m=None), "masked_m is None"),
        (dict(granularity=None), "granularity must be a string, got NoneType"),
        (dict(scope=5), "scope must be a string, got int"),
        (dict(a_format=5), "a_format must be a string"),
        (dict(load_only=1), "load_only must be True or False"),
        # Only None means "not given": an empty format is an unknown one, not the default.
        (dict(a_format=""), "a_format: unknown format ''"),
        (dict(b_format=""), "b_format: unknown format ''"),
        # c_dtype against out's own dtype, whatever framework out comes from.
        (dict(c_dtype="float16"), "c_dtype = 'float16' but out is bfloat16"),
        # What only a hand-made DLPack capsule holds: a negative extent, elements without data.
        (dict(workspace=FakeCudaTensor((-16,))), "workspace has a negative extent in dimension 0"),
        (dict(a=FakeManagedTensor((E, MAX_M, K))), "a is DLPack device type 13, not CUDA device memory"),
        (dict(alpha=FakeCudaTensor((E,), "float", 32, address=0)), "alpha has elements but no data"),
        # A tile the launch refuses is named as such, not as too few counters for it.
        (dict(block_m=7, granularity="per_row_block", signals=FakeCudaTensor((4,), "uint", 32)), "config.block_m"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(**override)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(ab_dtype="float8_e5m2", sf_dtype="float8_e8m0fnu", sf_vec_size=32), "not a supported operand format"),
        (dict(ab_dtype="float4_e2m1fn", sf_dtype="float8_e4m3fn", sf_vec_size=32), "not a supported operand format"),
        (dict(ab_dtype="float8_e4m3fn", sf_dtype="float32", sf_vec_size=128, a_format="mxfp8"),
         "a_format = 'mxfp8' contradicts ab_dtype"),
        (dict(sf_dtype="float8_e4m3fn", sf_vec_size=16), "pass ab_dtype too"),
        (dict(c_dtype="float32"), "c_dtype = 'float32' is not supported"),
        (dict(mma_tiler_mn=(64, 128), block_m=128), "mma_tiler_mn"),
        (dict(cluster_shape_mn=(2, 2)), "cluster_shape_mn"),
        (dict(cluster_shape_mn=(2, 1), cluster=1), "cluster_shape_mn"),
        (dict(alpha_dtype="bfloat16"), "alpha_dtype"),
        # Mapped, then checked by the launch's own validation: the format, the tile and the cluster arrive.
        # FlashInfer's swizzled scales are read from torch tensors only (others would pass the size checks).
        (dict(ab_dtype="float8_e4m3fn", sf_dtype="float8_e8m0fnu", sf_vec_size=32),
         "sfa: with ab_dtype, mxfp8 scales are FlashInfer's swizzled bytes, read from torch tensors only"),
        (dict(ab_dtype="float8_e4m3fn", sf_dtype="float32", sf_vec_size=128, mma_tiler_mn=(48, 128)),
         "config.block_m"),
        (dict(mma_tiler_mn=(64, 128), cluster_shape_mn=(1, 2)), "config.cluster"),
    ],
)
def test_flashinfer_calling_convention(override, message):
    """FlashInfer's keyword arguments map onto SignalGEMM's, or fail naming themselves."""
    with pytest.raises(ValueError, match=message):
        call(**override)


def test_format_from_flashinfer():
    assert signalgemm.format_from_flashinfer("float4_e2m1fn", "float8_e4m3fn", 16) == "nvfp4"
    assert signalgemm.format_from_flashinfer("float4_e2m1fn", "float8_e8m0fnu", 32) == "mxfp4"
    assert signalgemm.format_from_flashinfer("float8_e4m3fn", "float8_e8m0fnu", 32) == "mxfp8"
    assert signalgemm.format_from_flashinfer("float8_e4m3fn", "float32", 128) == "fp8_block128"
    assert signalgemm.format_from_flashinfer("bfloat16") == "bf16"
    with pytest.raises(ValueError, match="sf_vec_size = 16 is not a supported"):
        signalgemm.format_from_flashinfer("float8_e4m3fn", "float8_e4m3fn", 16)


def assert_fails_past_the_scale_checks(failure, name):
    """The call got past the extension's checks of `name` and failed only on the fake pointers (no GPU
    here), or on a GPU's check that they are device memory."""
    message = str(failure.value)
    assert re.search("no CUDA device|is not device memory", message), message
    assert name not in message, message


def test_deepgemm_mn_major_activation_scales_pass_the_scale_checks():
    """DeepGEMM's MN-major sfa (logical [E, max_m, K/128], the rows contiguous) is the documented
    memory: accepted by the scale checks (the call then fails only on the fake pointers)."""
    view = FakeCudaTensor((E, MAX_M, K // 128), "float", 32, strides=(MAX_M * (K // 128), 1, MAX_M),
                          address=0x7F0001000000)
    with pytest.raises((ValueError, RuntimeError)) as failure:
        call(sfa=view)
    assert_fails_past_the_scale_checks(failure, "sfa")


def test_deepgemm_mn_major_activation_scales_with_rows_padded_to_four():
    """DeepGEMM's view keeps max_m padded to 4 in its strides: for max_m = 62, still the documented memory."""
    rows = MAX_M - 2
    view = FakeCudaTensor((E, rows, K // 128), "float", 32, strides=(MAX_M * (K // 128), 1, MAX_M),
                          address=0x7F0001000000)
    with pytest.raises((ValueError, RuntimeError)) as failure:
        call(a=FakeCudaTensor((E, rows, K), address=0x7F0000000000),
             out=FakeCudaTensor((E, rows, N), "bfloat", 16, address=0x7F0004000000), sfa=view)
    assert_fails_past_the_scale_checks(failure, "sfa")


def test_alpha_of_e_elements_in_any_contiguous_shape():
    """SGLang passes alpha as (1, 1, E): FlashInfer reads it by pointer, and so does the extension."""
    with pytest.raises((ValueError, RuntimeError)) as failure:
        call(alpha=FakeCudaTensor((1, 1, E), "float", 32, address=0x7F0006000000))
    assert_fails_past_the_scale_checks(failure, "alpha")


def test_strides_of_size_one_dimensions_are_not_looked_at():
    """Exporters set a size-1 dimension's stride freely (older torch exports 1): one expert, packed
    weights, masked_m and signals with such strides pass the layout checks (then fail only on the
    fake pointers)."""
    packed = signalgemm.MmaFragments(FakeCudaTensor((1, N // 64, K // 64, 2560), "uint", 8,
                                                    strides=(1, (K // 64) * 2560, 2560, 1), address=0x7F0002000000), N, K)
    one = dict(a=FakeCudaTensor((1, MAX_M, K), "bfloat", 16, strides=(1, K, 1), address=0x7F0000000000),
               sfa=None, a_format="bf16", b=packed, sfb=FakeCudaTensor((N * K // 16,), "uint", 8, address=0x7F0003000000),
               b_format="nvfp4", out=FakeCudaTensor((1, MAX_M, N), "bfloat", 16, strides=(1, N, 1), address=0x7F0004000000),
               masked_m=FakeCudaTensor((1,), "int", 32, strides=(7,), address=0x7F0005000000),
               signals=FakeCudaTensor((1,), "uint", 32, strides=(3,), address=0x7F0007000000))
    with pytest.raises((ValueError, RuntimeError)) as failure:
        call(**one)
    assert_fails_past_the_scale_checks(failure, "contiguous")


def test_load_only_validates_like_the_launch():
    with pytest.raises(ValueError, match="config.block_m"):
        call(block_m=48, load_only=True)


def test_packed_mma_fragments_are_checked():
    bf16 = dict(a=FakeCudaTensor((E, MAX_M, K), "bfloat", 16), sfa=None, a_format="bf16")
    packed = signalgemm.MmaFragments(FakeCudaTensor((E, N // 64, K // 64, 2560), "uint", 8), N, K)
    sfb = FakeCudaTensor((E * N * K // 16,), "uint", 8)
    with pytest.raises(ValueError, match="packed mma_fragments weights are nvfp4 or mxfp4"):
        call(b=packed, sfb=sfb, b_format="mxfp8", **bf16)
    wrong = signalgemm.MmaFragments(FakeCudaTensor((E, N // 64 + 1, K // 64, 2560), "uint", 8), N, K)
    with pytest.raises(ValueError, match=r"\[E, ceil\(N/64\), ceil\(K/64\), 2560\]"):
        call(b=wrong, sfb=sfb, b_format="nvfp4", **bf16)
    # fp8_block128 activations would be converted inside the GEMM: not with packed weights.
    with pytest.raises(ValueError, match="b.layout"):
        call(b=packed, sfb=sfb, b_format="nvfp4")


def test_host_arrays_lists_and_numbers_are_refused_by_name():
    with pytest.raises(ValueError, match="a is in host memory; it must be a CUDA tensor"):
        signalgemm.grouped_gemm_nt_masked(
            (np.zeros((E, MAX_M, K), np.uint8), None), (np.zeros((E, N, K), np.uint8), None),
            np.zeros((E, MAX_M, N), np.float32), np.zeros(E, np.int32))
    for name, value, what in (("masked_m", np.ones(E, np.int32), "is in host memory"),
                              ("masked_m", [1] * E, r"is not a tensor \(list\)"),
                              ("alpha", 1.0, r"is not a tensor \(float\)"),
                              ("alpha", np.ones(E, np.float32), "is in host memory"),
                              ("workspace", 4096, r"is not a tensor \(int\)")):
        with pytest.raises(ValueError, match=f"{name} {what}; it must be a CUDA tensor"):
            call(**{name: value})
    # Counters and flags may be host memory (the extension then asks for it pinned), not a list.
    with pytest.raises(ValueError, match=r"signals is not a tensor \(list\); it must be a CUDA tensor or pinned host memory"):
        call(signals=[0] * E)


def test_lhs_must_be_a_pair():
    t = operands()
    with pytest.raises(TypeError, match="lhs"):
        signalgemm.grouped_gemm_nt_masked(t["a"], (t["b"], t["sfb"]), t["out"], t["masked_m"])


def test_signals_and_dst_signals_are_aliases():
    s = FakeCudaTensor((E,), "uint", 32)
    with pytest.raises(ValueError, match="not both"):
        call(signals=s, dst_signals=s)


def test_expected_signals_follow_the_contract():
    masked_m = [0, 1, 64, 33]
    layout = signalgemm.signal_layout(4, 64, 296, expected_m=32)
    assert layout["block_m"] == 64 and layout["block_n"] == 128 and layout["counter_count"] == 4
    col_blocks = 3  # ceil(296 / 128)
    assert signalgemm.expected_signals(masked_m, n=296, max_m=64, expected_m=32) == [0, col_blocks, col_blocks, col_blocks]
    per_block = signalgemm.expected_signals(masked_m, n=296, max_m=64, block_m=32, block_n=128, granularity="per_row_block")
    assert per_block == [0, 0, 3, 0, 3, 3, 3, 3]  # 2 row blocks per expert
    assert signalgemm.expected_signals(np.array([5, 0]), n=128, max_m=8, block_m=32, block_n=128) == [1, 0]
    with pytest.raises(TypeError):  # keyword-only: swapped, n and max_m would give a smaller count
        signalgemm.expected_signals(masked_m, 296, 64)


@pytest.mark.parametrize(
    "call, message",
    [
        # Sizes a launch would reject have no layout or workspace size.
        (lambda: signalgemm.signal_layout(-1, 64, 64), "num_experts must be >= 1"),
        (lambda: signalgemm.signal_layout(2, 0, 64), "max_m must be >= 1"),
        (lambda: signalgemm.signal_layout(2, 64, 300), "multiple of 8"),
        (lambda: signalgemm.signal_layout(2, 64, 64, block_m=7, block_n=3), "config.block_m = 7"),
        (lambda: signalgemm.expected_signals([5], n=64, max_m=64, block_m=64, block_n=3), "config.block_n = 3"),
        (lambda: signalgemm.workspace_bytes(2**31 - 1, 2**31 - 1, 2**31 - 1, "nvfp4"), "too large"),
        (lambda: signalgemm.workspace_bytes(1, 1, 4096, "bf16", "nvfp4", n=4096, block_m=-64), "config.block_m = -64"),
        (lambda: signalgemm.activation_workspace_bytes(0, 64, 128, "nvfp4"), "num_experts must be >= 1"),
        (lambda: signalgemm.workspace_bytes(4, 64, 200, "fp8_block128"), "k = 200 must be a multiple of 128"),
        (lambda: signalgemm.activation_workspace_bytes(4, 64, 40, "bf16", "nvfp4"), "k = 40 must be a multiple of 16"),
        # masked_m is host data here: checked, not clamped.
        (lambda: signalgemm.expected_signals([-5, 3], n=64, max_m=8), r"masked_m\[0\] = -5"),
        (lambda: signalgemm.expected_signals([500, 3], n=64, max_m=256), r"masked_m\[0\] = 500"),
        (lambda: signalgemm.expected_signals([5.7], n=64, max_m=8), r"masked_m\[0\] = 5.7"),
        (lambda: signalgemm.expected_signals(["3"], n=64, max_m=8), r"masked_m\[0\] = 3"),
        (lambda: signalgemm.expected_signals(np.array(3), n=64, max_m=8), "masked_m must be a sequence"),
        (lambda: signalgemm.expected_signals({1, 3}, n=64, max_m=8), "masked_m must be a sequence"),
        (lambda: signalgemm.expected_signals([3], n=64, max_m=2**31), "max_m = 2147483648 is out of range"),
        (lambda: signalgemm.signal_layout(2, 64, 2**31), "n = 2147483648 is out of range"),
        (lambda: signalgemm.signal_layout(2, 64, 64, block_m=None), "block_m must be an integer, got None"),
        (lambda: signalgemm.MmaFragments(None, -5, 64), "n and k >= 1"),
        (lambda: signalgemm.MmaFragments(None, 1.5, 64), "n must be an integer, got float"),
        (lambda: signalgemm.scales_from_flashinfer(np.full(512, 0.5, np.float32), 1, 128, 64), "one byte per scale"),
        (lambda: signalgemm.scales_from_flashinfer(np.zeros(512, np.uint8), 1, 128, 64, sf_vec_size=0),
         "sf_vec_size must be >= 1"),
        # A byte count past 2^63 must not wrap around to the size of the array given.
        (lambda: signalgemm.scales_from_flashinfer(np.zeros(0, np.uint8), 2**30, 2**30, 256), "more than 2\\^63"),
        (lambda: signalgemm.scales_from_flashinfer(np.zeros(0, np.uint8), None, 128, 64), "num_experts must be"),
        (lambda: signalgemm.signal_layout(4, 64, 256, b_format=""), "b_format: unknown format ''"),
        (lambda: signalgemm.workspace_bytes(4, 64, 512, "fp8_block128", ""), "b_format: unknown format ''"),
        (lambda: signalgemm.workspace_bytes(4, 64, 512, "fp8_block128", sm_count=-1), "sm_count must be >= 0"),
        (lambda: signalgemm.activation_workspace_bytes(None, 64, 128, "nvfp4"), "num_experts must be an integer"),
        (lambda: signalgemm.signal_layout(4, 64, 256, granularity=None), "granularity must be a string"),
        (lambda: signalgemm.format_from_flashinfer("float4_e2m1fn", "float8_e4m3fn", 16.9),
         "sf_vec_size must be an integer"),
        (lambda: signalgemm.format_from_flashinfer(["float4_e2m1fn"]), "ab_dtype must be a string"),
    ],
)
def test_planning_helpers_reject_what_a_launch_would(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_signal_layout_follows_the_cluster():
    """A launch given cluster 2 runs its own tile: the helpers plan with it too."""
    plain = signalgemm.signal_layout(8, 256, 4096, granularity="per_row_block")
    paired = signalgemm.signal_layout(8, 256, 4096, granularity="per_row_block", cluster=2)
    assert (paired["block_m"], paired["block_n"]) != (plain["block_m"], plain["block_n"])
    per_block = signalgemm.expected_signals([256] * 8, n=4096, max_m=256, granularity="per_row_block", cluster=2)
    assert per_block[0] == 4096 // paired["block_n"]


def test_signal_layout_completes_a_one_sided_tile_as_the_launch_does():
    """A tile given on one side only is completed with a tile compiled for the pairing and weight
    layout: fp8_block128 tokens x packed nvfp4 weights have 128 x 128 where rows have 32 x 128."""
    kwargs = dict(block_n=128, a_format="fp8_block128", b_format="nvfp4")
    rows = signalgemm.signal_layout(8, 16, 4096, **kwargs)
    packed = signalgemm.signal_layout(8, 16, 4096, mma_fragments=True, **kwargs)
    assert (rows["block_m"], rows["block_n"]) == (32, 128)
    assert (packed["block_m"], packed["block_n"]) == (128, 128)
    # A side only one tile has runs that tile.
    token_rows = signalgemm.signal_layout(8, 16, 4096, block_n=192)
    decode = signalgemm.signal_layout(8, 256, 4096, block_m=48, a_format="bf16", b_format="nvfp4")
    assert (token_rows["block_m"], token_rows["block_n"]) == (128, 192)
    assert (decode["block_m"], decode["block_n"]) == (48, 256)
    # A side no compiled tile of the pairing has: refused, naming the field.
    with pytest.raises(ValueError, match="config.block_m = 192"):
        signalgemm.signal_layout(8, 16, 4096, block_m=192, a_format="fp8_block128", b_format="nvfp4")


def test_signal_layout_follows_the_stages():
    """A tile given on one side with stages that do not fit the heuristic's other side is completed
    with one that fits them (as the launch does): the helpers plan with the stages too, or a consumer
    would wait for half the tiles of each expert."""
    plain = signalgemm.signal_layout(8, 256, 4096, k=7168, block_n=128)
    staged = signalgemm.signal_layout(8, 256, 4096, k=7168, block_n=128, stages=6)
    assert (plain["block_m"], plain["block_n"]) == (128, 128)
    assert (staged["block_m"], staged["block_n"]) == (64, 128)
    assert signalgemm.expected_signals([100] * 8, n=4096, max_m=256, k=7168, block_n=128, stages=6) == [64] * 8
    bf16 = signalgemm.signal_layout(8, 256, 4096, k=7168, block_m=128, stages=4, a_format="bf16")
    assert (bf16["block_m"], bf16["block_n"]) == (128, 128)
    # The workspace planner takes the launch's tile options, SM count and weight layout as well: a split
    # of K over fewer SMs has fewer partials.
    all_sms = signalgemm.workspace_bytes(1, 16, 7168, "bf16", "nvfp4", n=4096, mma_fragments=True)
    half = signalgemm.workspace_bytes(1, 16, 7168, "bf16", "nvfp4", n=4096, mma_fragments=True, sm_count=66)
    assert all_sms > half > 0
    assert signalgemm.workspace_bytes(1, 16, 7168, "bf16", "nvfp4", n=4096, block_n=128, stages=4) >= 0
    # Sized for the launch it serves: one-format FP4 pairings there run as bf16 activations, with their tiles.
    assert signalgemm.workspace_bytes(4, 64, 512, "nvfp4", n=256, block_m=128, block_n=128, mma_fragments=True) > 0


def test_signal_layout_asks_for_k_where_it_picks_the_tile():
    """Few decode tiles of weights dequantized in registers: K <= 2048 takes 128 weight rows
    unsplit, a longer K 256 rows split in pieces (many of 32 tokens beside nvfp4 weights: the other
    way round); left out there, K is asked for by name."""
    sizes = dict(a_format="bf16", b_format="nvfp4", expected_m=16)
    with pytest.raises(ValueError, match="k: the tile of these sizes depends on K"):
        signalgemm.signal_layout(1, 32, 7168, **sizes)
    with pytest.raises(ValueError, match="k: the tile"):
        signalgemm.expected_signals([20], n=7168, max_m=32, **sizes)
    short = signalgemm.signal_layout(1, 32, 7168, k=2048, **sizes)
    long = signalgemm.signal_layout(1, 32, 7168, k=7168, **sizes)
    assert (short["block_m"], short["block_n"]) == (32, 128)
    assert (long["block_m"], long["block_n"]) == (32, 256)
    assert signalgemm.expected_signals([20], n=7168, max_m=32, k=2048, **sizes) == [7168 // 128]
    assert signalgemm.expected_signals([20], n=7168, max_m=32, k=7168, **sizes) == [7168 // 256]
    # nvfp4 activations converted in a workspace run as bf16 ones: the same; converted in the
    # GEMM, they keep 256 rows whatever K.
    with pytest.raises(ValueError, match="k: the tile"):
        signalgemm.signal_layout(1, 32, 7168, a_format="nvfp4", expected_m=16)
    assert signalgemm.signal_layout(1, 32, 7168, a_format="nvfp4", expected_m=16, workspace=False)["block_n"] == 256
    # fp8_block128 tokens x FP4 weights read from a workspace take 128x128 at short K; converted per
    # tile (no split of K), 128x128 whatever K where the tiles are this few, 256 rows where many.
    fp8_tokens = dict(a_format="fp8_block128", b_format="mxfp4", expected_m=16)
    with pytest.raises(ValueError, match="k: the tile"):
        signalgemm.signal_layout(1, 32, 7168, **fp8_tokens)
    short = signalgemm.signal_layout(1, 32, 7168, k=2048, **fp8_tokens)
    assert (short["block_m"], short["block_n"]) == (128, 128)
    assert signalgemm.signal_layout(1, 32, 7168, k=4096, **fp8_tokens)["block_n"] == 256
    assert signalgemm.signal_layout(1, 32, 7168, workspace=False, **fp8_tokens)["block_n"] == 128
    assert signalgemm.signal_layout(32, 32, 7168, workspace=False, **fp8_tokens)["block_n"] == 256
    # One 128-token block per expert over at most 32 decode tiles (1 x 2 x 16 of 64x256): 64 tokens and
    # K split where K is long, read from a workspace only.
    few_blocks = dict(a_format="fp8_block128", b_format="nvfp4", expected_m=90)
    with pytest.raises(ValueError, match="k: the tile"):
        signalgemm.signal_layout(1, 96, 4096, **few_blocks)
    for k, workspace, tile in ((7168, True, (64, 256)), (2048, True, (128, 128)), (7168, False, (128, 128))):
        layout = signalgemm.signal_layout(1, 96, 4096, k=k, workspace=workspace, **few_blocks)
        assert (layout["block_m"], layout["block_n"]) == tile
    # Many decode tiles of 32 tokens: nvfp4 weights take 128 rows but at short K, the others 256 rows.
    with pytest.raises(ValueError, match="k: the tile"):
        signalgemm.signal_layout(32, 32, 7168, **sizes)
    assert signalgemm.signal_layout(32, 32, 7168, k=7168, **sizes)["block_n"] == 128
    assert signalgemm.signal_layout(32, 32, 7168, k=2048, **sizes)["block_n"] == 256
    # Where K picks nothing it may be left out: fp8_block128, or many decode tiles of other weights.
    assert signalgemm.signal_layout(1, 32, 7168, expected_m=16)["block_n"] == 128
    assert signalgemm.signal_layout(32, 32, 7168, a_format="bf16", b_format="mxfp4", expected_m=16)["block_n"] == 256


def test_signal_layout_follows_the_formats_and_the_workspace():
    # bf16 x nvfp4 at decode: 256 weight rows per tile, 48 tokens where 1.3 x 32 fit.
    layout = signalgemm.signal_layout(4, 64, 4096, expected_m=32, a_format="bf16", b_format="nvfp4")
    assert (layout["block_m"], layout["block_n"]) == (48, 256)
    # nvfp4 x nvfp4 at m = 128: converted in a workspace it runs as bf16 x nvfp4 (192 x 128), without
    # one on its own 128 x 128.
    with_ws = signalgemm.signal_layout(4, 176, 4096, expected_m=128, a_format="nvfp4", b_format="nvfp4")
    as_bf16 = signalgemm.signal_layout(4, 176, 4096, expected_m=128, a_format="bf16", b_format="nvfp4")
    without = signalgemm.signal_layout(4, 176, 4096, expected_m=128, a_format="nvfp4", workspace=False)
    assert (with_ws["block_m"], with_ws["block_n"]) == (as_bf16["block_m"], as_bf16["block_n"]) == (192, 128)
    assert (without["block_m"], without["block_n"]) == (128, 128)
    assert signalgemm.activation_workspace_bytes(4, 176, 4096, "nvfp4") == 4 * 176 * 4096 * 2
    assert signalgemm.activation_workspace_bytes(4, 176, 4096, "bf16", "nvfp4") == 0
    # fp8_block128 x fp8_block128 keeps the 16-byte tile counter of dynamic scheduling there.
    assert signalgemm.workspace_bytes(4, 176, 4096, "nvfp4") == 4 * 176 * 4096 * 2
    assert signalgemm.workspace_bytes(4, 176, 4096, "bf16", "nvfp4") == 0
    assert signalgemm.workspace_bytes(4, 176, 4096, "fp8_block128") == 16
    # One expert of 4096 columns (32 tiles of 32x128; planned for an H100's 132 SMs without a GPU):
    # K split in 4, the counters and the fp32 partials of every piece.
    assert signalgemm.workspace_bytes(1, 16, 7168, "fp8_block128", n=4096) == 16 + 128 + 32 * 4 * 32 * 128 * 4
    assert signalgemm.workspace_bytes(8, 16, 7168, "fp8_block128", n=4096) == 16
    # bf16 splits into 8 pieces or not at all (and has no tile counter, so else no workspace).
    assert signalgemm.workspace_bytes(1, 16, 7168, "bf16", n=2048) == 16 + 64 + 16 * 8 * 32 * 128 * 4
    assert signalgemm.workspace_bytes(1, 16, 7168, "bf16", n=4096) == 0
    # bf16 x nvfp4 on its 32x256 decode tile: 16 tiles, 8 pieces; nvfp4 x nvfp4 the same past its
    # converted activations (256-byte aligned).
    split = 16 + 64 + 16 * 8 * 32 * 256 * 4
    assert signalgemm.workspace_bytes(1, 16, 7168, "bf16", "nvfp4", n=4096) == split
    assert signalgemm.workspace_bytes(1, 16, 7168, "nvfp4", n=4096) == 16 * 7168 * 2 + split
    assert signalgemm.workspace_bytes(1, 16, 7168, "mxfp8", n=4096) == 16 * 7168 * 2 + split  # 128-K stages, 8 pieces
    # fp8_block128 tokens x nvfp4: converted to bf16 in the workspace, the partials past them.
    assert signalgemm.workspace_bytes(1, 16, 7168, "fp8_block128", "nvfp4", n=4096) == 16 * 7168 * 2 + split
    assert signalgemm.workspace_bytes(1, 16, 7168, "fp8_block128", "mxfp4", n=4096) == 16 * 7168 * 2 + split



@pytest.mark.parametrize("a_format, b_format", [("nvfp4", "nvfp4"), ("mxfp8", "mxfp8"), ("fp8_block128", "nvfp4")])
def test_other_frameworks_activations_with_signals_choose_the_workspace(a_format, b_format):
    # No workspace can be allocated for them here, and with or without one the tile (what each
    # counter counts) differs: the launch refuses to guess which one the consumer planned for.
    a_bytes = K // 2 if a_format == "nvfp4" else K
    b_bytes = K // 2 if b_format == "nvfp4" else K
    with pytest.raises(ValueError, match="workspace: a is not a torch tensor"):
        call(a_format=a_format, b_format=b_format, a=FakeCudaTensor((E, MAX_M, a_bytes)),
             b=FakeCudaTensor((E, N, b_bytes)), signals=FakeCudaTensor((E,), "uint", 32))

# ---- quantizers: decode the documented layouts independently in numpy

E4M3 = np.array([((-1) ** (c >> 7)) * (2.0 ** ((c >> 3 & 15) - 7) * (1 + (c & 7) / 8) if (c >> 3 & 15) else
                  2.0 ** -6 * (c & 7) / 8) for c in range(256)])
E4M3[[0x7F, 0xFF]] = np.nan
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])


def random_input(rng, e, rows, k):
    return (rng.standard_normal((e, rows, k)) * rng.uniform(0.1, 10, (e, rows, 1))).astype(np.float32)


def relative_error(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def test_fp8_block128_activation_layout_and_round_trip():
    rng = np.random.default_rng(0)
    x = random_input(rng, 2, 6, 256)
    data, scales, global_scale = signalgemm.quantize(x, "fp8_block128", "a")
    assert data.shape == (2, 6, 256) and data.dtype == np.uint8 and scales.dtype == np.float32
    sfa = scales.reshape(2, 256 // 128, 8)  # [E][K/128][rows padded to 4]
    scale_per_element = np.repeat(sfa[:, :, :6].transpose(0, 2, 1), 128, axis=2)
    np.testing.assert_allclose(sfa[:, :, :6], np.abs(x).reshape(2, 6, 2, 128).max(-1).transpose(0, 2, 1) / 448,
                               rtol=1e-6)
    assert relative_error(E4M3[data] * scale_per_element, x) < 0.05
    np.testing.assert_array_equal(global_scale, np.ones(2, np.float32))


def test_fp8_block128_weight_scales_are_128x128_blocks():
    rng = np.random.default_rng(1)
    x = random_input(rng, 1, 200, 256)
    data, scales, _ = signalgemm.quantize(x, "fp8_block128", "b")
    sfb = scales.reshape(1, 2, 2)  # [E][ceil(200/128)][K/128]
    per_element = np.repeat(np.repeat(sfb, 128, axis=1)[:, :200], 128, axis=2)
    assert relative_error(E4M3[data] * per_element, x) < 0.05


@pytest.mark.parametrize("fmt, block, decode_scale", [
    ("nvfp4", 16, lambda s: E4M3[s]),
    ("mxfp4", 32, lambda s: 2.0 ** (s.astype(np.float64) - 127)),
])
def test_fp4_nibbles_and_scales(fmt, block, decode_scale):
    rng = np.random.default_rng(2)
    x = random_input(rng, 2, 3, 64)
    data, scales, global_scale = signalgemm.quantize(x, fmt, "b")
    assert data.shape == (2, 3, 32)
    elements = np.stack([E2M1[data & 15], E2M1[data >> 4]], axis=-1).reshape(2, 3, 64)  # low nibble first
    per_element = np.repeat(decode_scale(scales.reshape(2, 3, 64 // block)), block, axis=2)
    value = elements * per_element * global_scale.reshape(2, 1, 1)
    assert relative_error(value, x) < 0.2


def test_mxfp8_round_trip():
    rng = np.random.default_rng(3)
    x = random_input(rng, 1, 4, 64)
    data, scales, _ = signalgemm.quantize(x, "mxfp8", "a")
    per_element = np.repeat(2.0 ** (scales.reshape(1, 4, 2).astype(np.float64) - 127), 32, axis=2)
    assert relative_error(E4M3[data] * per_element, x) < 0.05


def test_quantize_rejects_bad_k():
    with pytest.raises(ValueError, match="k"):
        signalgemm.quantize(np.ones((1, 2, 100), np.float32), "fp8_block128", "a")


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_quantize_rejects_values_that_are_not_finite(bad):
    x = np.ones((1, 128, 256), np.float32)
    x[0, 0, 0] = bad  # its block's scale would be Inf or NaN, and the whole block lost
    for fmt in ("fp8_block128", "nvfp4", "mxfp4", "mxfp8"):
        with pytest.raises(ValueError, match="NaN or Inf"):
            signalgemm.quantize(x, fmt)


def test_quantize_rejects_other_ranks():
    with pytest.raises(ValueError, match=r"x must be \[E, rows, K\], got shape \(4, 128\)"):
        signalgemm.quantize(np.ones((4, 128), np.float32), "fp8_block128", "a")


def test_expected_signals_rejects_nested_masked_m():
    with pytest.raises(ValueError, match="one-dimensional"):
        signalgemm.expected_signals([[3, 0]], n=256, max_m=32)


def test_size_helpers_require_k():
    for helper in (signalgemm.workspace_bytes, signalgemm.activation_workspace_bytes):
        with pytest.raises(ValueError, match="k must be >= 1, got 0"):
            helper(8, 64, 0, "nvfp4")


def test_scales_from_flashinfer_128x4():
    rows, cols, experts = 130, 5, 2  # k = 80 for sf_vec_size 16
    row_major = np.arange(1, experts * rows * cols + 1, dtype=np.uint64).astype(np.uint8).reshape(experts, rows, cols)
    tiles_m, tiles_k = 2, 2
    swizzled = np.zeros((experts, tiles_m * tiles_k * 512), np.uint8)
    for e in range(experts):  # the documented formula, written independently
        for r in range(rows):
            for c in range(cols):
                offset = ((r // 128) * tiles_k + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4
                swizzled[e, offset] = row_major[e, r, c]
    np.testing.assert_array_equal(signalgemm.scales_from_flashinfer(swizzled, experts, rows, 80), row_major)
    with pytest.raises(ValueError, match="bytes"):
        signalgemm.scales_from_flashinfer(swizzled[:, :-1], experts, rows, 80)
