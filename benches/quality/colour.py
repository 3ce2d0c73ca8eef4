#!/usr/bin/env python3
"""Foreground colour histograms of the apparel-dev photos (research only).

Usage: PY benches/quality/colour.py DATA_DIR OUT_DIR [bins]
Foreground = pixels that differ from the border colour (median of the four
corners) by more than 12 levels; joint RGB histogram with `bins` per channel,
square-rooted (Hellinger) and L2-normalised. Saved as colour<bins>.npy.
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def histogram(img, bins):
    a = np.asarray(img.convert("RGB"), dtype=np.int16)
    bg = np.median(np.stack([a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]]), axis=0)
    fg = np.abs(a - bg).max(axis=2) > 12
    px = a[fg] if fg.sum() > 50 else a.reshape(-1, 3)
    q = (px * bins // 256).astype(np.int64)
    h = np.bincount(q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2], minlength=bins**3).astype(np.float64)
    h = np.sqrt(h / h.sum())
    return h / np.linalg.norm(h)


def main(data, out, bins="8"):
    bins = int(bins)
    rows = [json.loads(l) for l in (Path(data) / "labels.jsonl").read_text().splitlines() if l.strip()]
    hs = np.stack([histogram(Image.open(Path(data) / r["image"]), bins) for r in rows])
    np.save(Path(out) / f"colour{bins}.npy", hs.astype(np.float32))


if __name__ == "__main__":
    main(*sys.argv[1:])
