#!/usr/bin/env python3
"""Summarizes one kernel's Nsight Compute source page: where the warps stall and what they execute.

On the GPU machine (the kernel name matches grouped_gemm_kernel<...>):
  ncu --kernel-name regex:grouped_gemm --launch-skip 2 --launch-count 1 --set full --import-source yes \\
      -o /tmp/k build/bench/signalgemm-bench --format bf16:nvfp4 --shapes 32:32:4096:7168 --iters 1 --warmup 1
  ncu -i /tmp/k.ncu-rep --page source --csv --print-source sass > $OUT/k_sass.csv
Here:
  scripts/ncu_summary.py k_sass.csv [--top 25]

Prints the stall reasons of all warps, then of the MMA warps alone (the instructions between the
first and the last wgmma, give or take the loop set-up), the instruction mix (warp instructions
executed, by opcode), and the instructions with the most stall samples.
"""
import argparse
import collections
import csv


def opcode(sass):
    words = sass.split()
    op = words[1] if words[0].startswith("@") else words[0]
    return op.split(".")[0]


def stall_table(rows, col, reasons, title):
    totals = collections.Counter()
    for r in rows:
        for name in reasons:
            totals[name] += int(r[col[name]] or 0)
    samples = sum(totals.values())
    print(f"{title}: {samples} samples")
    for name, n in totals.most_common(10):
        if n:
            print(f"  {name[len('stall_'):]:<20} {100 * n / samples:5.1f} %")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="ncu --page source --csv --print-source sass output")
    parser.add_argument("--top", type=int, default=25, help="instructions to list (default 25)")
    args = parser.parse_args()

    with open(args.csv, newline="") as f:
        table = list(csv.reader(f))
    header_row = next(i for i, r in enumerate(table) if "Address" in r and "Source" in r)
    header, rows = table[header_row], [r for r in table[header_row + 1:] if len(r) == len(table[header_row])]
    col = {name: i for i, name in enumerate(header)}
    reasons = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    samples, executed = col["Warp Stall Sampling (All Samples)"], col["Instructions Executed"]

    stall_table(rows, col, reasons, "all warps")
    is_mma = ["GMMA" in r[col["Source"]] for r in rows]
    mma = [i for i, m in enumerate(is_mma) if m]
    if mma:
        stall_table(rows[max(0, mma[0] - 200):mma[-1] + 50], col, reasons, "MMA warps (around the wgmmas)")

    mix = collections.Counter()
    for r in rows:
        mix[opcode(r[col["Source"]].strip())] += int(r[executed] or 0)
    total = sum(mix.values()) or 1
    wgmmas = sum(int(r[executed] or 0) for r, m in zip(rows, is_mma) if m)
    print(f"instruction mix: {total:.3g} warp instructions" + (f", {total / wgmmas:.1f} per wgmma" if wgmmas else ""))
    for op, n in mix.most_common(15):
        print(f"  {op:<10} {100 * n / total:5.1f} %")

    print(f"top {args.top} instructions by stall samples (samples, executions, top reasons):")
    for r in sorted(rows, key=lambda r: -int(r[samples] or 0))[: args.top]:
        top = sorted(((int(r[col[h]] or 0), h[len("stall_"):]) for h in reasons), reverse=True)[:2]
        why = ", ".join(f"{name} {n}" for n, name in top if n)
        print(f"  {r[col['Address']][-5:]}  {r[col['Source']].strip()[:58]:<58} {r[samples]:>6} {r[executed]:>9}  {why}")


if __name__ == "__main__":
    main()
