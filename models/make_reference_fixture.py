#!/usr/bin/env python3
"""Write tests/fixtures/ref_image.png and ref_embedding.json for the Rust embedder tests.

The image is synthetic and already 224x224, so no resampling happens and the Rust
side should reproduce the features almost exactly (its test wants cosine >= 0.999).
Run with the python of the venv that models/fetch prints, after models/fetch:

  PY models/make_reference_fixture.py SAMPLES_DIR
"""
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.dont_write_bytecode = True  # keep models/ free of __pycache__
from selfcheck import preprocess, session  # noqa: E402  (same preprocessing as the self-check)

MODELS = Path(__file__).resolve().parent
FIXTURES = MODELS.parent / "tests" / "fixtures"


def synthetic_image(size=224):
    """Deterministic colourful test card: gradient background plus flat shapes."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    rgb = np.stack([
        np.broadcast_to(ramp[None, :], (size, size)),           # red grows left to right
        np.broadcast_to(ramp[:, None], (size, size)),           # green grows downwards
        np.full((size, size), 160, np.float32),
    ], axis=-1)
    img = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    draw.ellipse((20, 24, 110, 114), fill=(230, 40, 40), outline=(20, 20, 20), width=4)
    draw.rectangle((124, 30, 200, 96), fill=(30, 70, 220))
    draw.polygon([(40, 200), (100, 130), (160, 200)], fill=(250, 210, 30))
    draw.rectangle((150, 140, 210, 210), fill=(20, 160, 70), outline=(255, 255, 255), width=3)
    for i in range(0, size, 16):  # thin stripes give the network some edges to respond to
        draw.line((i, 0, i + 40, 18), fill=(255, 255, 255), width=2)
    return img


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    manifest = tomllib.loads((MODELS / "manifest.toml").read_text())
    model, pre = manifest["model"], manifest["preprocess"]
    sess = session(MODELS / model["file"])
    names = [model["output_features"], model["output_logits"]]

    def run(image):
        return [o[0] for o in sess.run(names, {model["input_name"]: preprocess(image, pre)})]

    image_path = FIXTURES / "ref_image.png"
    FIXTURES.mkdir(parents=True, exist_ok=True)
    synthetic_image().save(image_path, optimize=True)
    features, _ = run(Image.open(image_path))  # re-read: test what the PNG decodes to
    norm = float(np.linalg.norm(features))
    _, chelsea_logits = run(Image.open(Path(argv[1]) / "chelsea.png"))
    top5 = np.argsort(-chelsea_logits)[:5]

    fixture = {
        "model_id": model["id"],
        "model_sha256": model["sha256"],
        "image": image_path.name,
        "preprocess": {
            "color": pre["color"], "resize": pre["resize"], "filter": pre["filter"],
            "crop": pre["crop"], "scale": pre["scale"], "mean": pre["mean"], "std": pre["std"],
            "layout": model["input_layout"],
        },
        "features_raw_l2_norm": round(norm, 6),
        "features_l2": [float(f"{v:.8g}") for v in features / norm],
        "chelsea_top5": [{"class": int(c), "logit": round(float(chelsea_logits[c]), 4)}
                         for c in top5],
    }
    out = FIXTURES / "ref_embedding.json"
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {image_path} ({image_path.stat().st_size} bytes) and {out}; "
          f"chelsea top-5 {[int(c) for c in top5]}")


if __name__ == "__main__":
    main(sys.argv)
