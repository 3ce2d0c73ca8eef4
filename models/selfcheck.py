#!/usr/bin/env python3
"""Check a converted model against models/manifest.toml with Python onnxruntime.

The sample photos must get their known ImageNet classes with the manifest's
preprocessing; the alternative normalisation is scored too, to show the choice
is still the better one. Feature sanity: a mirrored photo must stay closer to
the original than a different photo does, and batching must not change results.

Usage: selfcheck.py MANIFEST MODEL.onnx SAMPLES_DIR
"""
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def preprocess(image, pre):
    """RGB, whole-image resize (no crop), [0,1] scaling, per-channel (x-mean)/std, NCHW."""
    image = image.convert("RGB")
    size = tuple(pre["resize"])
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    x = np.asarray(image, dtype=np.float32) / np.float32(pre["scale"])
    x = (x - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    return x.transpose(2, 0, 1)[None]


def session(model_path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_signature(sess, model):
    inp = sess.get_inputs()
    assert [i.name for i in inp] == [model["input_name"]], inp
    assert inp[0].shape[1:] == model["input_shape"][1:], inp[0].shape
    outs = {o.name: o.shape for o in sess.get_outputs()}
    assert outs[model["output_features"]][1] == model["feature_dim"], outs
    assert outs[model["output_logits"]][1] == model["num_classes"], outs


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-1])
    manifest = tomllib.loads(Path(argv[1]).read_text())
    model, pre, check = manifest["model"], manifest["preprocess"], manifest["selfcheck"]
    samples = Path(argv[3])
    sess = session(argv[2])
    check_signature(sess, model)
    names = [model["output_features"], model["output_logits"]]

    def run(x):
        return sess.run(names, {model["input_name"]: x})

    failures = []
    images = {name: Image.open(samples / name) for name in check["expected_class"]}
    candidates = {pre["normalisation"]: pre, **check["alternatives"]}
    for label, norm in candidates.items():
        norm = {**pre, "mean": norm["mean"], "std": norm["std"]}
        scores = []
        for name, want in check["expected_class"].items():
            probs = softmax(run(preprocess(images[name], norm))[1][0])
            top = int(probs.argmax())
            scores.append(f"{name}->{top} p={probs[top]:.3f}")
            if label == pre["normalisation"] and top != want:
                failures.append(f"{name}: got class {top}, expected {want}")
        chosen = " (chosen)" if label == pre["normalisation"] else ""
        print(f"  {label}{chosen}: " + ", ".join(scores))

    chelsea = images["chelsea.png"]
    batch = np.concatenate([preprocess(chelsea, pre),
                            preprocess(chelsea.transpose(Image.Transpose.FLIP_LEFT_RIGHT), pre),
                            preprocess(images["coffee.png"], pre)])
    feats, logits = run(batch)
    single = run(batch[:1])
    if not np.allclose(single[0][0], feats[0], atol=1e-4):
        failures.append("batched and single-image features differ")
    flip_cos, other_cos = cosine(feats[0], feats[1]), cosine(feats[0], feats[2])
    print(f"  features: dim={feats.shape[1]} |chelsea|={np.linalg.norm(feats[0]):.2f} "
          f"cos(chelsea,flipped)={flip_cos:.3f} cos(chelsea,coffee)={other_cos:.3f}")
    if flip_cos - other_cos < check["min_cosine_gap"]:
        failures.append("features do not separate different photos from a mirrored one")

    if failures:
        sys.exit("self-check FAILED: " + "; ".join(failures))
    print("self-check OK")


if __name__ == "__main__":
    main(sys.argv)
