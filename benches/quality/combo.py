#!/usr/bin/env python3
"""Whitened CNN features concatenated with a weighted foreground colour histogram (research only).

Usage: PY benches/quality/combo.py DATA_DIR VEC_DIR CNN_VARIANT COLOUR_VARIANT DIM SHRINK W[,W...]
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True
from evaluate import apply, fit_whiten, l2n, metric  # noqa: E402


def main(data, vec_dir, cnn, colour, dim, shrink, weights):
    rows = [json.loads(l) for l in (Path(data) / "labels.jsonl").read_text().splitlines() if l.strip()]
    idx = {r["product_id"]: i for i, r in enumerate(rows)}
    labels = [r["label"] for r in rows]
    dups = [{idx[d] for d in r["near_duplicates"] if d in idx} for r in rows]
    styles = sorted({r["style"] for r in rows})
    half_a = set(np.random.default_rng(8).permutation(styles)[: len(styles) // 2])
    a = np.array([r["style"] in half_a for r in rows])
    x = np.load(Path(vec_dir) / f"{cnn}.npy").astype(np.float64)
    c = l2n(np.load(Path(vec_dir) / f"{colour}.npy").astype(np.float64))

    def sub(mask):
        ids = np.where(mask)[0]
        remap = {g: l for l, g in enumerate(ids)}
        return ids, [labels[g] for g in ids], [{remap[d] for d in dups[g] if d in remap} for g in ids]

    parts = {"all": sub(np.ones(len(rows), bool)), "A": sub(a), "B": sub(~a)}
    for w in [float(v) for v in weights.split(",")]:
        res = {}
        for fit, ev in (("all", "all"), ("A", "B"), ("B", "A")):
            t = fit_whiten(x[parts[fit][0]], int(dim), float(shrink))
            ids, lab, dp = parts[ev]
            y = l2n(np.hstack([apply(t, x[ids]), w * c[ids]]))
            res[ev] = metric(y, lab, dp)
        print(f"cnn={cnn} colour={colour} dim={dim} shrink={shrink} w={w} " + " ".join(
            f"{p}.{m}.{k}={res[p][m][k]:.3f}" for p in ("all", "A", "B") for m in ("dedup", "raw")
            for k in ("recall_at_9", "p_at_1")), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
