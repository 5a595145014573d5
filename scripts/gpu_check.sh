#!/usr/bin/env bash
# The one command for the GPU machine: every GPU test, compute-sanitizer on small cases, and the
# benchmark, then a short table. Uses a carried ./build when its binaries run here, else builds.
# Logs go to a fresh folder under /tmp; with $OUT set (the device tool's output folder, which
# returns at most 8 files) the tables and timelines are copied there and every log in one archive.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
LOGS=$(mktemp -d /tmp/signalgemm-gpu-check.XXXXXX)

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
date -u +"%Y-%m-%d %H:%M UTC"

BUILD=${SIGNALGEMM_BUILD:-build}  # a carried build folder (binaries only is enough)
if ! "$BUILD/tests/signalgemm_gpu_tests" --gtest_list_tests >/dev/null 2>&1; then
  echo "== the carried build does not run here; building in build-gpu"
  BUILD=build-gpu
  # (Without GoogleTest CMake leaves the tests out, saying so in the log; their steps then fail.)
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$LOGS/build.log" 2>&1 &&
    cmake --build "$BUILD" -j "$(nproc)" >>"$LOGS/build.log" 2>&1 || { tail -30 "$LOGS/build.log"; exit 1; }
fi

declare -a TABLE
FAILED_STEPS=0
step() {  # step NAME COMMAND...: runs it, logs it, records the verdict and gtest's summary (rc 77: SKIP)
  local name=$1; shift
  local start=$SECONDS
  "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  local verdict=PASS
  if ((rc == 77)); then
    verdict=SKIP; rc=0
  elif ((rc != 0)); then
    verdict="FAIL(rc=$rc)"; FAILED_STEPS=$((FAILED_STEPS + 1))
  fi
  local note
  note=$(grep -E "^\[  PASSED  \]|^\[  FAILED  \]|^\[  SKIPPED \]|ERROR SUMMARY|RACECHECK SUMMARY| passed| failed" "$LOGS/$name.log" | tr '\n' ' ' | cut -c1-90)
  TABLE+=("$(printf '%-12s %-12s %5ss  %s' "$name" "$verdict" $((SECONDS - start)) "$note")")
  echo "== $name: $verdict ($((SECONDS - start)) s)"
  ((rc == 0)) || tail -40 "$LOGS/$name.log"
  # The archive is refreshed after every step, so a run cut short by a time limit still returns its logs.
  [[ -z "${OUT:-}" ]] || { mkdir -p "$OUT" && tar -czf "$OUT/gpu_check_logs.tar.gz" -C "$LOGS" .; }
}

# Every test of a binary in a fresh process of its own, as ctest runs them, under lazy module loading
# (CUDA's default): a test must not pass only because an earlier one loaded its kernels (a launch's
# first load beside a spinning consumer waits for the device to go idle; docs/signals.md). Each
# test's output is kept, its gtest summary lines indented; the sums close the log.
each_test() {  # each_test BINARY
  local bin=$1 suite="" line name out rc passed=0 skipped=0 failed=0 failures=""
  local list
  list=$("$bin" --gtest_list_tests) || return 1
  while IFS= read -r line; do
    if [[ $line != " "* ]]; then suite=${line%% *}; continue; fi  # "Suite." (a comment may follow)
    name=${line#  }
    name=$suite${name%% *}
    out=$(CUDA_MODULE_LOADING=LAZY "$bin" --gtest_filter="$name" 2>&1)
    rc=$?
    sed -E 's/^\[  (PASSED  |FAILED  |SKIPPED )\]/  &/' <<<"$out"
    if ((rc != 0)); then
      failed=$((failed + 1)); failures+=" $name"
    elif grep -q "^\[  SKIPPED \]" <<<"$out"; then
      skipped=$((skipped + 1))
    else
      passed=$((passed + 1))
    fi
  done <<<"$list"
  echo "[  PASSED  ] $passed tests, each alone."
  ((skipped == 0)) || echo "[  SKIPPED ] $skipped tests."
  ((failed == 0)) || { echo "[  FAILED  ] $failed tests:$failures"; return 1; }
}

# One small case per mainloop (fp8, bf16, bf16 x nvfp4, the dequantizing pairings) plus the fp8 edge cases.
SMALL='Fp8Block128Gemm.PaddedStridesAndFewSms:Fp8Block128Gemm.ClusterPairsEveryShareMode:Fp8Block128Gemm.OutOfRangeMaskedMIsClampedAndReported:Fp8Block128Gemm.EveryTileConfigAndEdgeMaskedM'
SMALL+=':Bf16Gemm.EveryTileConfigAndEdgeMaskedM:RegisterWeightsGemm.DecodeTilesOf256WeightRows:FormatPairings.SanitizerSmallCase:FormatPairings.PersistentCtasWithFewSms'
SMALL+=':MmaFragments.GpuPackingEqualsTheCpuPacking:MmaFragments.DecodeTilesOf256WeightRows:Fp8Block128Gemm.DynamicTilesFromAWorkspace'
SMALL+=':Fp8Block128Gemm.SplitKForFewTiles:Bf16Gemm.SplitKForFewTiles:MmaFragments.SplitKForFewTiles'
SMALL+=':RegisterWeightsGemm.SplitKSanitizerSmallCase:CombineTest.MatchesCpuCombineForRandomRoutings'
SMALL+=':Fp8Block128Gemm.RowScatterThroughOutRows:Fp8Block128Gemm.ProgrammaticDependentLaunchSeesPreviousWrites'
# The Python module is built here against this machine's Python and torch (when present): a
# CPU-bound minute or more, so it builds in the background, niced, while the GPU tests run.
python_build() {
  rm -rf /tmp/signalgemm-py
  python3 -c "import torch, nanobind, scikit_build_core" || { echo "no torch/nanobind here: skipped"; return 0; }
  CMAKE_BUILD_PARALLEL_LEVEL=$(( $(nproc) > 2 ? $(nproc) / 2 : 1 )) nice -n 10 \
    python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/signalgemm-py .
}
python_build >"$LOGS/python_build.log" 2>&1 &
PYTHON_BUILD_PID=$!
step cpu_tests "$BUILD/tests/signalgemm_cpu_tests"
step gpu_tests each_test "$BUILD/tests/signalgemm_gpu_tests"
# Random problems drawn anew on every run (gpu_tests draws the fixed seed 0): the seed, from the clock,
# is printed here and in any failure, so a problem found is reproduced with SIGNALGEMM_RANDOM_SEED.
RANDOM_SEED=$(date -u +%y%j%H%M)
echo "== random problems with SIGNALGEMM_RANDOM_SEED=$RANDOM_SEED"
step random env SIGNALGEMM_RANDOM_SEED="$RANDOM_SEED" "$BUILD/tests/signalgemm_gpu_tests" --gtest_filter='RandomProblems.*'
for tool in memcheck racecheck synccheck; do
  step "$tool" compute-sanitizer --tool "$tool" --error-exitcode 1 "$BUILD/tests/signalgemm_gpu_tests" --gtest_filter="$SMALL"
done
# The Python module's tests, once its background build is done.
python_tests() {
  wait "$PYTHON_BUILD_PID" || { cat "$LOGS/python_build.log"; return 1; }
  cat "$LOGS/python_build.log"
  [[ -d /tmp/signalgemm-py ]] || return 77  # skipped: no torch/nanobind here
  (cd python/tests && PYTHONPATH=/tmp/signalgemm-py python3 -m pytest -q -rs -p no:cacheprovider)
}
step python python_tests
step bench "$BUILD/bench/signalgemm-bench" --compare-signals --csv "$LOGS/bench.csv"
step demo "$BUILD/bench/signalgemm-demo" --svg "$LOGS/overlap_timeline.svg"
# Every other operand pairing over the SPEC shapes (time and x floor; fewer iterations).
formats_bench() {
  local pairing
  for pairing in bf16:bf16 bf16:nvfp4 fp8_block128:nvfp4 fp8_block128:mxfp4 bf16:mxfp8 bf16:mxfp4 mxfp8:mxfp8 mxfp4:mxfp4 nvfp4:nvfp4; do
    echo "-- a:b = $pairing"
    "$BUILD/bench/signalgemm-bench" --format "$pairing" --no-cublas --iters 10 --warmup 2 | grep -E '^ *[0-9]+ +[0-9]+ +[0-9]+' ||
      return 1
  done
  for pairing in bf16:nvfp4 bf16:mxfp4 fp8_block128:nvfp4 fp8_block128:mxfp4; do
    echo "-- a:b = $pairing, weights in the mma_fragments layout"
    "$BUILD/bench/signalgemm-bench" --format "$pairing" --mma-fragments --no-cublas --iters 10 --warmup 2 |
      grep -E '^ *[0-9]+ +[0-9]+ +[0-9]+' || return 1
  done
}
step formats formats_bench
# What one SM sustains for the decode MMA shapes, alone and with the dequantization (bench/wgmma_rates.cu).
step wgmma_rates "$BUILD/bench/signalgemm-wgmma-rates"
# The multi-GPU combine over NCCL's device API (docs/multigpu.md): test and benchmark on two or
# more GPUs, with libnccl from pip's nvidia-nccl-cu13 where installed; NVLink multicast off. On one
# GPU its tests still run (the one-rank combine, the argument checks; the others skip).
EP_NOTE=""
if [[ -x "$BUILD/tests/signalgemm_ep_tests" && -x "$BUILD/bench/signalgemm-ep-bench" ]]; then
  nccl_lib=$(python3 -c "import nvidia.nccl as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null)
  [[ -n "$nccl_lib" && -d "$nccl_lib" ]] && export LD_LIBRARY_PATH="$nccl_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export NCCL_NVLS_ENABLE=0
  step ep_tests each_test "$BUILD/tests/signalgemm_ep_tests"
  if (( $(nvidia-smi -L 2>/dev/null | wc -l) >= 2 )); then
    step ep_bench "$BUILD/bench/signalgemm-ep-bench" --svg "$LOGS/ep_overlap_timeline.svg" \
      --svg-throttled "$LOGS/ep_overlap_timeline_throttled.svg"
  else
    EP_NOTE="benchmark skipped: fewer than 2 GPUs"
  fi
else
  EP_NOTE="skipped: built without NCCL"
fi
[[ -n "$EP_NOTE" ]] && echo "== multi-GPU combine: $EP_NOTE"

echo
echo "== benchmark (full output in $LOGS/bench.log)"
cat "$LOGS/bench.log"
echo
echo "== overlap demo (timeline: $LOGS/overlap_timeline.svg)"
cat "$LOGS/demo.log"
echo
echo "== other operand pairings (E m N K | max_m | us | TFLOP/s | GB/s | floor_us | x_floor ...)"
cat "$LOGS/formats.log"
echo
echo "== wgmma rates per SM"
cat "$LOGS/wgmma_rates.log"
if [[ -z "$EP_NOTE" ]]; then
  echo
  echo "== multi-GPU combine benchmark (timelines: $LOGS/ep_overlap_timeline*.svg)"
  cat "$LOGS/ep_bench.log"
fi
echo
echo "== summary"
printf '%s\n' "${TABLE[@]}"
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  for f in bench.log bench.csv ep_bench.log overlap_timeline.svg ep_overlap_timeline.svg; do
    [[ -f "$LOGS/$f" ]] && cp "$LOGS/$f" "$OUT/"
  done
  tar -czf "$OUT/gpu_check_logs.tar.gz" -C "$LOGS" .
  echo "logs: $LOGS (copied to \$OUT: the tables, the timelines, gpu_check_logs.tar.gz)"
else
  echo "logs: $LOGS"
fi
exit $((FAILED_STEPS > 0))  # non-zero when any step failed
