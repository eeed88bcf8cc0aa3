"""Throughput of pseudo-mask generation once the CAM and saliency nets are trained (goal >= 20
images/s on 2 cores at 129x129), against a baseline measured in the same run: reading each
image and writing a mask PNG for it, i.e. the I/O the generator cannot avoid.
    python benchmarks/pseudo_label_speed.py [--dataset openmoji5i] [--cache-dir cache]
Trains the pool nets first if they are not cached (minutes on the default set; the mini set
trains small nets in seconds)."""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.data.datasets import get_dataset, read_image
from bench.data.palette import save_palette_png
from pseudo_labels.config import pseudo_config
from pseudo_labels.generate import build_pipeline, generate_pseudo_masks, pseudo_root

MINI_NETS = {"cam_width": 8, "cam_crop_epochs": 1, "cam_epochs": 2, "cam_batch": 16, "saliency_width": 8, "saliency_epochs": 1}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="openmoji5i-mini")
    ap.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = ap.parse_args()
    ds = get_dataset(args.dataset, args.cache_dir)
    cfg = pseudo_config(MINI_NETS if args.dataset.endswith("mini") else {})
    pipe = build_pipeline(ds, cfg, args.cache_dir)  # trains or loads the nets outside the timing
    root = pseudo_root(args.cache_dir, ds, pipe.fingerprint(ds))
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    generate_pseudo_masks(ds, cfg, args.cache_dir, log=lambda *_: None)
    gen_s = time.perf_counter() - t0
    ids = ds.ids("train") + ds.ids("val")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for i in ids:
            image = read_image(ds.image_path(i))  # uncached decode, as the generator's first read
            save_palette_png(np.zeros(image.shape[:2], np.uint8), Path(tmp) / "m.png")
        io_s = time.perf_counter() - t0
    rate = len(ids) / gen_s
    print(f"pseudo masks ({args.dataset}, {len(ids)} images): {gen_s:.1f} s = {rate:.0f} images/s "
          f"(goal >= 20); {gen_s / io_s:.1f}x the time of reading each image and writing one PNG")


if __name__ == "__main__":
    main()
