#!/usr/bin/env python3
"""Score saved embedding variants with issue #8's metric, with and without a
catalogue-fitted PCA-whitening, on the whole set and on a 50/50 style split.

Usage: [POWERS=1.0,0.5] [DIMS=128,256] [SHRINKS=0,0.1] PY benches/quality/evaluate.py DATA_DIR VEC_DIR [variant ...]
Prints key=value lines. The split is by style (seeded), so one garment never sits
in both halves: fit the transform on one half, evaluate on the other, and back.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np


def l2n(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def metric(vecs, labels, dups, k=9):
    """(dedup, raw) dicts of recall_at_9, p_at_1, map_at_10, queries."""
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, 40, axis=1)[:, :40]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable"), 1)
    groups = {}
    for j, lab in enumerate(labels):
        groups.setdefault(lab, []).append(j)
    out = {}
    for mode in ("dedup", "raw"):
        r9, p1, ap, n = 0.0, 0.0, 0.0, 0
        for i in range(len(vecs)):
            drop = dups[i] if mode == "dedup" else set()
            rel = {j for j in groups[labels[i]] if j != i and j not in drop}
            if not rel:
                continue
            ranked = [j for j in order[i] if j != i and j not in drop]
            n += 1
            hits = [j in rel for j in ranked[:10]]
            r9 += sum(hits[:k]) / min(k, len(rel))
            p1 += hits[0]
            s, cum = 0.0, 0
            for pos, h in enumerate(hits, 1):
                if h:
                    cum += 1
                    s += cum / pos
            ap += s / min(10, len(rel))
        out[mode] = {"recall_at_9": r9 / n, "p_at_1": p1 / n, "map_at_10": ap / n, "queries": n}
    return out


def fit_whiten(x, dim, shrink, power=1.0):
    """PCA-whitening fitted on x (rows L2-normalised first); shrink blends eigenvalues toward their mean."""
    x = prep(x, power)
    mu = x.mean(0)
    c = np.cov((x - mu).T)
    lam, u = np.linalg.eigh(c)
    idx = np.argsort(-lam)[:dim]
    lam, u = lam[idx], u[:, idx]
    lam = (1 - shrink) * lam + shrink * lam.mean()
    return mu, u / np.sqrt(lam + 1e-9)


def prep(x, power):
    if power != 1.0:
        x = np.sign(x) * np.abs(x) ** power
    return l2n(x)


def apply(t, x, power=1.0):
    mu, p = t
    return l2n((prep(x, power) - mu) @ p)


def grid(name, default, cast=float):
    """A comma-separated parameter list from the environment (e.g. DIMS=128,256)."""
    return [cast(v) for v in os.environ.get(name, default).split(",")]


def main(data, vec_dir, *variants):
    rows = [json.loads(l) for l in (Path(data) / "labels.jsonl").read_text().splitlines() if l.strip()]
    idx = {r["product_id"]: i for i, r in enumerate(rows)}
    labels = [r["label"] for r in rows]
    dups_all = [{idx[d] for d in r["near_duplicates"] if d in idx} for r in rows]
    styles = sorted({r["style"] for r in rows})
    rng = np.random.default_rng(8)
    half_a = set(rng.permutation(styles)[: len(styles) // 2])
    a = np.array([r["style"] in half_a for r in rows])

    def sub(mask):
        ids = np.where(mask)[0]
        remap = {g: l for l, g in enumerate(ids)}
        return ids, [labels[g] for g in ids], [{remap[d] for d in dups_all[g] if d in remap} for g in ids]

    parts = {"all": sub(np.ones(len(rows), bool)), "A": sub(a), "B": sub(~a)}
    configs = [("plain", None)] + [
        (f"pw{power}_d{d}_s{s}", (d, s, power))
        for power in grid("POWERS", "1.0") for d in grid("DIMS", "128,256,512", int)
        for s in grid("SHRINKS", "0.0,0.1")
    ]
    for v in variants or ["gap"]:
        # "a+b" averages the L2-normalised vectors of two variants (e.g. flip averaging).
        x = sum(l2n(np.load(Path(vec_dir) / f"{part}.npy").astype(np.float64)) for part in v.split("+"))
        for name, cfg in configs:
            res = {}
            if cfg is None:
                for part, (ids, lab, dp) in parts.items():
                    res[part] = metric(l2n(x[ids]), lab, dp)
            else:
                d, s, pw = cfg
                ids, lab, dp = parts["all"]
                res["all"] = metric(apply(fit_whiten(x, d, s, pw), x, pw), lab, dp)
                # cross: fit on one half, evaluate on the other
                for fit_part, ev_part in (("A", "B"), ("B", "A")):
                    t = fit_whiten(x[parts[fit_part][0]], d, s, pw)
                    ids, lab, dp = parts[ev_part]
                    res[ev_part] = metric(apply(t, x[ids], pw), lab, dp)
            line = " ".join(
                f"{part}.{m}.{k}={res[part][m][k]:.3f}"
                for part in ("all", "A", "B") for m in ("dedup", "raw") for k in ("recall_at_9", "p_at_1")
            )
            print(f"variant={v} cfg={name} {line}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
