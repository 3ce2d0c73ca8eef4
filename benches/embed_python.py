#!/usr/bin/env python3
"""The Python baseline of `adrec bench embed`: the same work as the Rust pipeline,
written the way a Python service would (Pillow + numpy + onnxruntime), timed.

For every image, in batches: read the file, decode (Pillow), apply the EXIF
orientation, composite transparency onto white, convert to RGB, resize the whole
image to the model input (bilinear, no crop; skipped when already that size),
scale and normalise per channel as models/manifest.toml [preprocess] says, NCHW,
one onnxruntime call per batch, L2-normalise the features.

Prints `python_img_per_s=...` and `python_seconds=...`; writes the vectors
(float32, little endian, one row per image in list order) to OUT.

Usage: embed_python.py MANIFEST MODEL IMAGE_LIST OUT BATCH THREADS
"""
import io
import sys
import time
import tomllib

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def load(path, size, scale, mean, std):
    with open(path, "rb") as f:
        data = f.read()
    image = Image.open(io.BytesIO(data))
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    x = np.asarray(image, dtype=np.float32) / scale
    return ((x - mean) / std).transpose(2, 0, 1)


def main(argv):
    if len(argv) != 7:
        sys.exit(__doc__.strip().splitlines()[-1])
    manifest = tomllib.loads(open(argv[1], "rb").read().decode())
    model, pre = manifest["model"], manifest["preprocess"]
    paths = [line for line in open(argv[3]).read().splitlines() if line]
    batch, threads = int(argv[5]), int(argv[6])
    size = pre["resize"][0]
    scale = np.float32(pre["scale"])
    mean = np.asarray(pre["mean"], np.float32)
    std = np.asarray(pre["std"], np.float32)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(argv[2], opts, providers=["CPUExecutionProvider"])
    names = [model["output_features"]]

    def embed(chunk):
        x = np.stack([load(p, size, scale, mean, std) for p in chunk])
        feats = sess.run(names, {model["input_name"]: x})[0]
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)

    embed(paths[:batch])  # warm-up, untimed (the Rust side warms up too)
    started = time.perf_counter()
    out = [embed(paths[i:i + batch]) for i in range(0, len(paths), batch)]
    seconds = time.perf_counter() - started
    np.concatenate(out).astype("<f4").tofile(argv[4])
    print(f"python_img_per_s={len(paths) / seconds:.2f}")
    print(f"python_seconds={seconds:.3f}")


if __name__ == "__main__":
    main(sys.argv)
