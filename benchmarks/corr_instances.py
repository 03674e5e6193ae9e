"""P3: instance-level correlation speed (GradTS-fg, DESIGN §2) and task ranking speed.

Vectorised ``correlate_many`` (Kendall tau-b) of one primary vector against 100k instance
vectors of 144 entries (6 layers x 12 heads, float32), against a Python loop of
``scipy.stats.kendalltau``. The loop is timed on a subset and extrapolated linearly (its cost
per row does not depend on the other rows). Also: ranking 20 tasks (``correlation_matrix`` on
20 x 144 plus ``rank_candidates``).

Goals: ratio >= 50x, vectorised <= 2 s, ranking < 1 s.

    python benchmarks/corr_instances.py [--n 100000] [--d 144] [--loop-rows 2000]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import scipy.stats

from gradts_engine.correlate import correlate_many, correlation_matrix, rank_candidates


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="instance vectors")
    ap.add_argument("--d", type=int, default=144, help="entries per vector (L*H)")
    ap.add_argument("--loop-rows", type=int, default=2000, help="rows timed in the SciPy loop")
    ap.add_argument("--tasks", type=int, default=20, help="tasks in the ranking benchmark")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    Y = rng.random((args.n, args.d), dtype=np.float32)  # (N, D) instance vectors
    x = rng.random(args.d, dtype=np.float32)  # (D,) primary task vector

    # correctness on the subset that the loop covers
    sub = Y[: args.loop_rows]
    stats, pvals = correlate_many(x, sub)
    ref = np.array([tuple(scipy.stats.kendalltau(x, y)) for y in sub])
    err = max(np.abs(stats - ref[:, 0]).max(), np.abs(pvals - ref[:, 1]).max())

    t_vec = best_of(lambda: correlate_many(x, Y), args.repeat)
    t_sub = best_of(lambda: [scipy.stats.kendalltau(x, y) for y in sub], 1)
    t_loop = t_sub * args.n / args.loop_rows

    V = rng.random((args.tasks, args.d))  # (T, D) task vectors
    names = [f"task{i:02d}" for i in range(args.tasks)]

    def ranking() -> None:
        S, P = correlation_matrix(V)
        for i, name in enumerate(names):
            rank_candidates(name, {t: (S[i, j], P[i, j]) for j, t in enumerate(names)})

    t_rank = best_of(ranking, args.repeat)

    ratio = t_loop / t_vec
    rows = [
        (
            f"scipy.stats.kendalltau loop, {args.n} x {args.d}",
            f"{t_loop:.2f} s",
            f"extrapolated linearly from {args.loop_rows} rows ({t_sub:.3f} s)",
        ),
        (
            f"correlate_many (Kendall), {args.n} x {args.d}",
            f"{t_vec:.3f} s",
            f"best of {args.repeat}; goal <= 2 s: {'met' if t_vec <= 2 else 'MISSED'}",
        ),
        ("speed-up", f"{ratio:.0f}x", f"goal >= 50x: {'met' if ratio >= 50 else 'MISSED'}"),
        (
            "max |difference| from SciPy (tau and p)",
            f"{err:.1e}",
            f"on the {args.loop_rows} looped rows",
        ),
        (
            f"rank {args.tasks} tasks ({args.tasks} x {args.d} matrix + rankings)",
            f"{t_rank * 1000:.1f} ms",
            f"best of {args.repeat}; goal < 1 s: {'met' if t_rank < 1 else 'MISSED'}",
        ),
    ]
    title = f"P3 correlation ({platform.processor() or platform.machine()}, numpy {np.__version__})"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for row in rows:
            print(" | ".join(row))
        return
    table = Table(title=title)
    for col in ("measurement", "time", "note"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
