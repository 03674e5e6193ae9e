"""Memory of the importance pass: instance matrices go to disk in chunks, not to RAM.

Runs the probe's ``importance_pass`` (the ``after`` pass that writes every instance's (L, H)
matrix to the store) on a model with 12 layers x 12 heads (L*H = 144, as BERT-base) over N
synthetic examples, each N in a fresh process, and reports the process's peak resident memory.
If the matrices were kept in memory the peak would grow by N*144*4 bytes; the goal (issue 3)
is that an MNLI-size task (400k instances, 230 MB of matrices) needs no more than a few hundred
MB of RAM for them. The ratio column is (peak growth from the smallest N) / (matrix bytes).

    python benchmarks/probe_memory.py [--sizes 10000,80000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, tempfile, time
import numpy as np, torch
torch.set_num_threads(1)
from gradts_engine import data, models, probe
from gradts_engine.config import ProbeSettings, RunSettings
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry

n, root = int(sys.argv[1]), sys.argv[2]
path = models.make_tiny_model(root + "/model", layers=12, heads=12, hidden=48,
                              words=[f"w{i}" for i in range(200)])
spec = build_registry(include_user=False).get("neg_movie")
rng = np.random.default_rng(0)
lengths = rng.integers(6, 14, size=n)
offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
ids = rng.integers(5, 200, size=int(offsets[-1])).astype(np.int32)
enc = data.Encoded(ids, None, offsets, rng.integers(0, 2, size=n).astype(np.int64),
                   "neg_movie", "train", "synthetic")
settings = ProbeSettings(epochs=1, batch_size=64, max_length=16)
ctx = probe.context(str(path), RunSettings(device="cpu", seed=0), settings, Store(root + "/h"))
net, layout = probe.build_probe_model(ctx, spec)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
st = Store(root + "/h")
key = st.key("bench", ["mem"], {"n": n})
t0 = time.perf_counter()
with st.writer(key) as w:
    probe.after_pass(ctx, spec, net, layout, enc, w, None)
secs = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
files = sorted(p.name for p in st.path(key).iterdir())
print(json.dumps({"n": n, "base_kb": base, "peak_kb": peak, "seconds": secs,
                  "chunks": sum(f.startswith("instances") for f in files),
                  "LH": layout.num_layers * layout.num_heads}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,80000")
    args = ap.parse_args()
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, "-c", CHILD, str(n), tmp], check=True,
                                 capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = rows[0]
    print(f"importance pass, {first['LH']} heads per instance, CPU, 1 thread; peak RSS of "
          "the whole process (model, data and pass)")
    print(f"{'instances':>10} {'chunks':>6} {'seconds':>8} {'peak RSS MB':>12} "
          f"{'growth MB':>10} {'matrices MB':>12} {'growth/matrices':>16}")
    for r in rows:
        growth = (r["peak_kb"] - first["peak_kb"]) / 1024
        mats = (r["n"] - first["n"]) * r["LH"] * 4 / 2**20
        ratio = f"{growth / mats:.3f}" if mats > 0 else "-"
        print(f"{r['n']:>10} {r['chunks']:>6} {r['seconds']:>8.1f} {r['peak_kb'] / 1024:>12.0f} "
              f"{growth:>10.1f} {r['n'] * r['LH'] * 4 / 2**20:>12.1f} {ratio:>16}")
    big = rows[-1]
    per_instance = (big["peak_kb"] - first["peak_kb"]) * 1024 / max(big["n"] - first["n"], 1)
    print(f"extrapolated to 400k instances: about {per_instance * 400_000 / 2**20:.0f} MB of "
          f"growth (matrices alone: {400_000 * big['LH'] * 4 / 2**20:.0f} MB)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
