#!/usr/bin/env python3
"""Embed the apparel-dev photos with EfficientNet-Lite0 under several pooling / cropping
variants and save the vectors as .npy (research only; outputs are never committed).

Usage: PY benches/quality/extract.py DATA_DIR OUT_DIR
Variants (all from one forward pass unless noted):
  gap        global average pool (what the shipped model outputs)
  gem3       generalised-mean pool, p=3, over the 7x7 ReLU6 map
  max        global max pool
  crop_*     the same after cropping uniform borders and re-padding to a square
  flip_*     the horizontally mirrored image (a second forward pass)
"""
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[2]


def model_with_map(path):
    """The shipped model plus its pre-pool feature map as an extra output."""
    m = onnx.load(str(path))
    pool = next(n for n in m.graph.node if n.op_type == "GlobalAveragePool")
    m.graph.output.append(onnx.helper.make_tensor_value_info(pool.input[0], onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]), pool.input[0]


def crop_border(img, tol=12, margin=0.04):
    """Crop a uniform border (colour of the corners) and pad back to a square with it."""
    a = np.asarray(img, dtype=np.int16)
    corners = np.stack([a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]])
    bg = np.median(corners, axis=0)
    diff = np.abs(a - bg).max(axis=2) > tol
    rows, cols = np.where(diff.any(axis=1))[0], np.where(diff.any(axis=0))[0]
    if len(rows) == 0:
        return img
    t, b, l, r = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = int(max(b - t, r - l) * (1 + 2 * margin))
    cy, cx = (t + b) / 2, (l + r) / 2
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in bg))
    canvas.paste(img.crop((l, t, r, b)), (int(side / 2 - (r - l) / 2), int(side / 2 - (b - t) / 2)))
    return canvas


def prep(img, pre):
    img = img.convert("RGB")
    if img.size != (224, 224):
        img = img.resize((224, 224), Image.Resampling.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / np.float32(pre["scale"])
    x = (x - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    return x.transpose(2, 0, 1)


def pools(fmap):
    f = np.maximum(fmap, 0).reshape(fmap.shape[0], fmap.shape[1], -1)
    out = {"gap": f.mean(-1), "max": f.max(-1)}
    for p in (2, 3, 4):
        out[f"gem{p}"] = np.mean(np.power(f + 1e-6, p), -1) ** (1.0 / p)
    return out


def main(data, out):
    manifest = tomllib.loads((ROOT / "models/manifest.toml").read_text())
    pre = manifest["preprocess"]
    sess, map_name = model_with_map(ROOT / "models" / manifest["model"]["file"])
    rows = [json.loads(l) for l in (Path(data) / "labels.jsonl").read_text().splitlines() if l.strip()]
    transforms = {
        "": lambda im: im,
        "crop_": crop_border,
        "flip_": ImageOps.mirror,
    }
    acc = {}
    B = 32
    for start in range(0, len(rows), B):
        batch = [Image.open(Path(data) / r["image"]).convert("RGB") for r in rows[start:start + B]]
        for prefix, fn in transforms.items():
            x = np.stack([prep(fn(im), pre) for im in batch])
            fmap = sess.run([map_name], {"input": x})[0]
            for k, v in pools(fmap).items():
                acc.setdefault(prefix + k, []).append(v.astype(np.float32))
        print(f"{start + len(batch)}/{len(rows)}", file=sys.stderr, flush=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    for k, v in acc.items():
        np.save(Path(out) / f"{k}.npy", np.concatenate(v))
    (Path(out) / "ids.json").write_text(json.dumps([r["product_id"] for r in rows]))


if __name__ == "__main__":
    main(*sys.argv[1:])
