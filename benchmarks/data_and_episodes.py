"""Speed of the foundation: embedded dataset generation and episode sampling.

Prints absolute rates and ratios against baselines measured in the same run:
generation is compared with merely decoding+encoding the same number of images, and
episode sampling with building the pixel-count index it needs.
    python benchmarks/data_and_episodes.py [--full]
--full also times the default openmoji5i set (about 10,000 images) from scratch."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench.data.datasets import class_pixel_counts, embedded_dataset, mini_spec
from bench.data.embedded.generate import EmbeddedSpec, generate
from bench.harness.episodes import sample_test_episodes
from bench.harness.presets import PRESETS


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = mini_spec()
        root, gen_s = timed(lambda: generate(tmp / "datasets", spec))
        n = sum(1 for _ in root.rglob("*.jpg"))
        jpgs = sorted(root.rglob("*.jpg"))

        def reencode():
            for p in jpgs:
                Image.open(p).convert("RGB").save(tmp / "x.jpg", quality=90)

        _, io_s = timed(reencode)
        print(f"generation (mini, {n} images): {gen_s:.2f} s = {n / gen_s:.0f} img/s; "
              f"{gen_s / io_s:.1f}x the time of only decoding+encoding them")
        if args.full:
            full_root, full_s = timed(lambda: generate(tmp / "full", EmbeddedSpec()))
            n_full = sum(1 for _ in full_root.rglob("*.jpg"))
            print(f"generation (default openmoji5i, {n_full} images): {full_s:.1f} s = {n_full / full_s:.0f} img/s (goal <= 120 s)")
        ds = embedded_dataset(tmp, spec, "openmoji5i-mini")
        counts, index_s = timed(lambda: class_pixel_counts(ds, "val", tmp))
        preset = PRESETS["wacv22"]
        for way, shot in ((1, 1), (2, 5)):
            eps, s = timed(lambda: sample_test_episodes(counts, ds.fold_classes(0), preset, ds.name, 0, way, shot, 1234))
            print(f"episode sampling {way}-way {shot}-shot: {len(eps) / s:,.0f} episodes/s "
                  f"({s / index_s:.2f}x the one-off index build of {index_s:.2f} s)")


if __name__ == "__main__":
    main()
