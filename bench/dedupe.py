"""Near-duplicate grouping of 64-bit perceptual hashes: multi-index hashing against numpy brute force.

Data: random uint64 hashes plus planted clusters (n/20 base hashes, each copied eight times with 1..8 random bit
flips, and a quarter of them once more exactly), shuffled, so there are real groups to find. Baseline, measured in
the same run: blocked all-pairs numpy brute force on a smaller set made the same way (--sample, 20,000 by default),
extrapolated quadratically to n; `near_duplicate_groups` runs on that set too and must give identical groups.
Goal: 1,000,000 hashes at distance 8 in <= 30 s with < 2 GB peak memory on 2 cores.
Run: `.venv/bin/python bench/dedupe.py [--n N] [--distance D] [--sample N]`.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from curate.dedupe.index import _plan, near_duplicate_groups  # noqa: E402

GOAL_SECONDS = 30.0
GOAL_BYTES = 2 * 1024**3
GOAL_N = 1_000_000
GOAL_DISTANCE = 8


def make_hashes(n: int, seed: int) -> np.ndarray:
    """n hashes: random ones plus planted near-duplicate clusters, shuffled."""
    rng = np.random.default_rng(seed)
    bases = max(1, n // 20)
    exact = bases // 4
    copies_per_base = 8
    randoms = max(bases, n - bases * copies_per_base - exact)
    hashes = rng.integers(0, 2**64, size=randoms, dtype=np.uint64)
    chosen = hashes[rng.choice(randoms, bases, replace=False)]
    parts = [hashes, chosen[:exact]]
    for flips in range(1, copies_per_base + 1):
        copy = chosen.copy()
        for _ in range(flips):  # a bit may flip back: up to `flips` bits apart
            copy ^= np.uint64(1) << rng.integers(0, 64, size=bases).astype(np.uint64)
        parts.append(copy)
    mixed = np.concatenate(parts)[:n]
    return mixed[rng.permutation(mixed.size)]


def brute_force_groups(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """All pairs by blocked numpy popcount, then a plain union-find; ids are each group's smallest index."""
    parent = list(range(hashes.size))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    rows = max(1, (1 << 18) // hashes.size)
    for start in range(0, hashes.size, rows):
        distances = np.bitwise_count(hashes[start : start + rows, None] ^ hashes[None, :])
        left, right = np.nonzero(distances <= max_distance)
        for a, b in zip((left + start).tolist(), right.tolist(), strict=True):
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(hashes.size)], dtype=np.int64)


def timed(function, *args):
    """(result, wall seconds, process CPU seconds): CPU time shows the work when other jobs share the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def clusters(groups: np.ndarray) -> int:
    return int((np.bincount(groups) > 1).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=GOAL_N, help="hashes in the main run")
    parser.add_argument("--distance", type=int, default=GOAL_DISTANCE, help="max Hamming distance")
    parser.add_argument("--sample", type=int, default=20_000, help="hashes in the brute-force comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    console = Console()
    d = args.distance

    near_duplicate_groups(np.array([0, 1], dtype=np.uint64), 1)  # warm-up: pay one-off imports (scipy) here
    sample = make_hashes(args.sample, args.seed + 1)
    expected, brute_wall, brute_cpu = timed(brute_force_groups, sample, d)
    got, small_wall, small_cpu = timed(near_duplicate_groups, sample, d)
    identical = bool(np.array_equal(got, expected))

    hashes = make_hashes(args.n, args.seed)
    rss_before = peak_rss_bytes()
    groups, wall, cpu = timed(near_duplicate_groups, hashes, d)
    rss_peak = peak_rss_bytes()

    scale = (args.n / args.sample) ** 2
    plan = _plan(np.unique(hashes).size, np.unique(hashes).size, d, self_join=True)
    layout = "brute force" if plan is None else " + ".join(f"{c.bits}b/r{c.radius}" for c in plan)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    table = Table(title=f"Near-duplicate grouping at distance {d} ({cores} cores, load {os.getloadavg()[0]:.1f})")
    for column in ("run", "hashes", "wall s", "cpu s", "peak RSS", "clusters"):
        table.add_column(column, justify="left" if column == "run" else "right")
    table.add_row(
        "gleaner", f"{args.n:,}", f"{wall:.2f}", f"{cpu:.2f}", f"{rss_peak / 2**20:,.0f} MiB", f"{clusters(groups):,}"
    )
    table.add_row(
        "brute force (extrapolated)", f"{args.n:,}", f"{brute_wall * scale:,.0f}", f"{brute_cpu * scale:,.0f}"
    )
    table.add_row("gleaner", f"{args.sample:,}", f"{small_wall:.3f}", f"{small_cpu:.3f}", "", f"{clusters(got):,}")
    table.add_row(
        "brute force", f"{args.sample:,}", f"{brute_wall:.2f}", f"{brute_cpu:.2f}", "", f"{clusters(expected):,}"
    )
    console.print(table)
    console.print(f"keys per chunk (bits/radius): {layout}; process RSS before the call {rss_before / 2**20:,.0f} MiB")
    console.print(
        f"sample of {args.sample:,}: groups "
        + ("identical to brute force" if identical else "[bold red]DIFFER[/] from brute force")
    )
    console.print(
        f"speed-up against brute force: {brute_wall * scale / wall:,.0f}x at {args.n:,} hashes "
        f"(brute force {brute_wall:.2f} s × {scale:,.0f}), {brute_wall / small_wall:,.1f}x at {args.sample:,}"
    )
    if args.n == GOAL_N and d == GOAL_DISTANCE:
        ok = wall <= GOAL_SECONDS and rss_peak < GOAL_BYTES
        verdict = "meets" if ok else "MISSES"
        console.print(
            f"{wall:.1f} s and {rss_peak / 2**30:.2f} GiB peak {verdict} the goal of <= {GOAL_SECONDS:.0f} s "
            f"and < {GOAL_BYTES / 2**30:.0f} GiB"
        )
    if not identical:
        raise SystemExit("near_duplicate_groups disagrees with brute force on the sample")


if __name__ == "__main__":
    main()
