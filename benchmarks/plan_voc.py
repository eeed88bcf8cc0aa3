"""`bench plan` for real PASCAL-5i at the reference codes' sizes, without VOC on disk: writes a VOC
tree of the real counts (10,582 trainaug + 1,449 val images at 500x375, one object box each, class
cycling 1..20) and random-weight files of the architectures the reference profile asks for (the
plan reads shapes, never values), then prints one plan for every method in full and weak mode
under `wacv22` (the paper's 129 px protocol) and each baseline's own preset (PANet `panet2019` at
417 px, PFENet `pfenet2020` at 473 px / own size). The cache target of issue 23: at most 50 GB.

    python benchmarks/plan_voc.py [--work /tmp/plan_voc] [--device cpu|cuda]

Sizes are exact per file (bench/core/plans.py); times are probes on this machine's device.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bench  # noqa: F401 - the CPU pins first
import numpy as np
from PIL import Image

N_TRAIN, N_VAL, W, H = 10_582, 1_449, 500, 375
TARGET_GB = 50


def voc_tree(root: Path) -> Path:
    if (root / "ImageSets/Segmentation/val.txt").is_file():
        return root
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = [f"{k:06d}" for k in range(N_TRAIN + N_VAL)]
    image = Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    for k, image_id in enumerate(ids):
        mask = np.zeros((H, W), np.uint8)
        mask[100:250, 150:350] = 1 + k % 20
        image.save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
        Image.fromarray(mask).save(root / "SegmentationClassAug" / f"{image_id}.png")
    (root / "ImageSets/Segmentation/trainaug.txt").write_text("\n".join(ids[:N_TRAIN]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[N_TRAIN:]) + "\n")
    return root


def weight_files(folder: Path) -> dict:
    """Random-weight files of the shapes the reference profile loads (what a user points at)."""
    import torch
    import torchvision

    from backbones.deeplab import build_deeplab
    from backbones.trunks import resnet_os8

    folder.mkdir(parents=True, exist_ok=True)
    files = {"deeplab": folder / "deeplabv3plus_r101-d8.pth", "resnet": folder / "resnet50_v2.pth",
             "vgg": folder / "vgg16-397923af.pth"}
    if not files["deeplab"].is_file():
        torch.save({"state_dict": build_deeplab("r101-os8", 21).state_dict()}, files["deeplab"])
    if not files["resnet"].is_file():
        torch.save(resnet_os8(50).state_dict(), files["resnet"])
    if not files["vgg"].is_file():
        torch.save(torchvision.models.vgg16().state_dict(), files["vgg"])
    return files


def requests(root: Path, cache: Path, results: Path, files: dict):
    from bench.harness.runner import RunRequest

    weights = {"ours": {"backbone_checkpoint": str(files["deeplab"])},
               "pfenet": {"trunk_checkpoint": str(files["resnet"])},
               "panet": {"trunk_checkpoint": str(files["vgg"])},
               "amp": {"trunk_checkpoint": str(files["vgg"])}}
    presets = {"ours": ["wacv22"], "panet": ["wacv22", "panet2019"], "amp": ["wacv22"], "pfenet": ["wacv22", "pfenet2020"]}
    # weak mode: the user's CAM (ImageNet VGG-16 minus the benchmark's classes) and no saliency file here
    pseudo = {"cam": "vgg16", "cam_weights": str(files["vgg"]), "saliency": "none"}
    for method, chosen in presets.items():
        for preset in chosen:
            for mode in ("full", "weak"):
                yield RunRequest(method=method, mode=mode, dataset="pascal5i", data_root=root, preset=preset,
                                 config=weights[method], pseudo=pseudo if mode == "weak" else {}, cache_dir=cache,
                                 results_dir=results, profile="reference")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/plan_voc"))
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from bench.core.device import use_device
    from bench.harness.plan import plan_all

    use_device(args.device)
    root = voc_tree(args.work / "VOC2012")
    files = weight_files(args.work / "weights")
    made = plan_all(list(requests(root, args.work / "cache", args.work / "results", files)))
    print("\n".join(made.lines()))
    gb = made.new_bytes() / 1e9
    print(f"real VOC ({N_TRAIN:,} + {N_VAL:,} images), 4 methods x 2 modes, reference profile: {gb:.1f} GB of cache "
          f"(target: at most {TARGET_GB} GB) -> {'met' if gb <= TARGET_GB else 'MISSED'}")
    return 0 if gb <= TARGET_GB else 1


if __name__ == "__main__":
    sys.exit(main())
