"""`bench pseudo ...` subcommands."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.core.settings import parse_overrides
from bench.core.errors import BenchError
from pseudo_labels.config import pseudo_config


def _config(args):
    return pseudo_config(parse_overrides(args.overrides))


def train_cam(args, dataset, cache: Path) -> int:
    from pseudo_labels.backends import cam_backend

    cfg = _config(args)
    cam = cam_backend(dataset, cfg, cache)
    meta_file = Path(getattr(cam, "path", "")).with_suffix(".json")
    if cfg.cam == "pool" and meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        print(f"CAM classifier ({len(cam.class_names)} pool classes, trained in {meta['train_s']:.0f} s): "
              f"held-out top-1 {meta['val_top1']:.1f}%, label recall {meta['val_label_recall']:.1f}% ({meta['n_val']} images)")
        print(f"weights: {cam.path}")
    else:
        print(f"CAM back-end {cfg.cam}: {len(cam.class_names)} classes, {cam.fingerprint()}")
    return 0


def train_saliency(args, dataset, cache: Path) -> int:
    from pseudo_labels.backends import saliency_backend

    cfg = _config(args)
    sal = saliency_backend(dataset, cfg, cache)
    if cfg.saliency == "pool":
        meta = json.loads(Path(sal.path).with_suffix(".json").read_text())
        print(f"saliency net (trained in {meta['train_s']:.0f} s): held-out foreground IoU {meta['val_fg_iou']:.1f}%")
        print(f"weights: {sal.path}")
    else:
        print(f"saliency back-end {cfg.saliency}: nothing to train ({sal.fingerprint()})")
    return 0


def generate(args, dataset, cache: Path) -> int:
    from pseudo_labels.generate import generate_pseudo_masks

    root = generate_pseudo_masks(dataset, _config(args), cache)
    manifest = json.loads((root / "manifest.json").read_text())
    print(f"{manifest['n_images']} pseudo masks at {root} (fingerprint {manifest['fingerprint']})")
    return 0


def neighbours(args, dataset, cache: Path) -> int:
    from pseudo_labels.generate import build_pipeline
    from pseudo_labels.words import phrase_words

    names = list(dataset.class_names)
    if args.class_name not in names:
        from bench.core.settings import did_you_mean

        raise BenchError(f"unknown class '{args.class_name}'{did_you_mean(args.class_name, names)}; "
                         f"{dataset.name} classes: {', '.join(names)}")
    cfg = _config(args)
    pipe = build_pipeline(dataset, cfg, cache)
    c = names.index(args.class_name)
    sim, w = pipe.similarities[c], pipe.weights[c]
    share = w / w.sum() if w.sum() > 0 else w
    print(f"{args.class_name} -> words {' '.join(phrase_words(args.class_name))} "
          f"({cfg.words}, weighting {cfg.weighting}); top CAM classes by weight w_k:")
    for k in np.argsort(-w, kind="stable")[: args.top]:
        print(f"  {pipe.cam.class_names[k]:<32} cos {sim[k]:+.3f}  w {w[k]:.3f}  share of T-bar {100 * share[k]:5.1f}%")
    return 0


def report(args, dataset, cache: Path) -> int:
    from pseudo_labels.generate import build_pipeline
    from pseudo_labels.report import example_figure, quality, quality_table, write_quality_record

    cfg = _config(args)
    splits = ("train", "val") if args.split == "both" else (args.split,)
    pipe = build_pipeline(dataset, cfg, cache)
    record = quality(dataset, cfg, cache, splits, pipe=pipe)
    path = write_quality_record(record, args.results_dir)
    print(f"pseudo masks {record['fingerprint']} of {dataset.name} ({record['n_images']} images, {'+'.join(splits)}): "
          f"IoU (%) against GT")
    print(quality_table(record))
    if record["saliency_fg_iou"] is not None:
        print(f"saliency alone: foreground IoU {record['saliency_fg_iou']:.1f}%")
    figure = args.figure or path.with_suffix(".png")
    example_figure(dataset, cfg, cache, figure, pipe=pipe)
    print(f"record: {path}\nexamples: {figure}")
    return 0


def train_imagenet_cam(args, cache: Path) -> int:
    """`bench pseudo train-cam --imagenet DIR`: the synsets left after the benchmark's classes, their
    synonyms and hyponyms (bench/harness/declared.py) are the CAM's classes."""
    from bench.data.classes import COCO_CLASSES, VOC_CLASSES
    from bench.data.vocabulary import overlap
    from pseudo_labels.imagenet_cam import folder_synsets, synset_names, train_imagenet_cam as train

    names = synset_names(args.imagenet, args.synsets)
    benchmark = VOC_CLASSES if args.benchmark == "pascal" else COCO_CLASSES
    kept, excluded = [], []
    for wnid in folder_synsets(args.imagenet):
        aliases = tuple(names.get(wnid, []))
        if not aliases:
            raise BenchError(f"synset {wnid} in {args.imagenet}/train has no name in the synset file; fix: pass the "
                             f"LOC_synset_mapping.txt of this ImageNet copy with --synsets")
        (excluded if overlap(aliases, benchmark) else kept).append((wnid, aliases[0]))
    out = args.out or Path(cache) / "cam" / f"{args.arch}-{args.benchmark}-free.pth"
    train(args.imagenet, kept, [w for w, _ in excluded], out, args.arch, args.epochs, args.batch, args.lr, args.size,
          args.max_per_class)
    print(f"CAM classifier {args.arch}: {len(kept)} synsets, {len(excluded)} left out as {args.benchmark} classes "
          f"({', '.join(n for _, n in excluded[:6])}{' ...' if len(excluded) > 6 else ''})")
    print(f"weights: {out} (classes in {out}.classes.txt); use it with --pseudo-set cam=vgg16 cam_weights={out}")
    return 0


COMMANDS = {"train-cam": train_cam, "train-saliency": train_saliency, "generate": generate,
            "neighbours": neighbours, "report": report}
