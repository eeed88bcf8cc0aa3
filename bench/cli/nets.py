"""The pretrained networks: `bench backbone`, `bench trunk`, `bench pseudo` (handlers of the last in
bench/cli/pseudo.py)."""
from __future__ import annotations

from pathlib import Path

from bench.cli.flags import dataset_flags, device_flag, results_flag, set_flag
from bench.core.settings import parse_overrides


def add_parsers(sub) -> dict:
    bb = sub.add_parser("backbone", help="the frozen DeepLabV3+ (pretrained on the disjoint pool) and its feature cache")
    bsub = bb.add_subparsers(dest="backbone_command", required=True)
    for name, text in (("pretrain", "pretrain DeepLabV3+ on the pool (cached) and print its held-out mIoU"),
                       ("features", "compute and store the decoder features of every train and test image")):
        q = bsub.add_parser(name, help=text)
        dataset_flags(q)
        set_flag(q, "fields of backbones/pretrain.py:BackboneConfig, e.g. arch=r18-os16 steps=300")
        device_flag(q)
        if name == "pretrain":
            q.add_argument("--layout", choices=("voc", "ade20k", "coco"), default=None,
                           help="pretrain on your own segmentation set: --dataset is then its folder; the benchmark's "
                                "classes become ignore, images dominated by them are dropped")
            q.add_argument("--benchmark", choices=("pascal", "coco"), default="pascal", help="whose classes to leave out")
            q.add_argument("--size", type=int, default=129, help="side the set's images are resized to")
            q.add_argument("--out", type=Path, default=None, help="copy the weights here with FILE.classes.txt beside them")

    tr = sub.add_parser("trunk", help="the baselines' VGG-16 trunk, pretrained on the disjoint pool's object crops")
    tsub = tr.add_subparsers(dest="trunk_command", required=True)
    q = tsub.add_parser("pretrain", help="pretrain the VGG-16 trunk on pool crops (cached) and print its held-out top-1")
    dataset_flags(q)
    set_flag(q, "fields of backbones/trunks.py:TrunkConfig, e.g. width=0.5 epochs=8")
    device_flag(q)

    ps = sub.add_parser("pseudo", help="pseudo masks from image-level labels (CAM x word vectors, saliency gate)",
                        description="Settings (--set KEY=VALUE) are the fields of pseudo_labels/config.py:PseudoConfig.")
    psub = ps.add_subparsers(dest="pseudo_command", required=True)
    for name, text in (("train-cam", "train the pool CAM classifier (cached) and print its held-out accuracy"),
                       ("train-saliency", "train the pool saliency net (cached) and print its held-out foreground IoU"),
                       ("generate", "write pseudo masks for every train and test image (cached by fingerprint)"),
                       ("neighbours", "CAM classes with the largest weights w_k for a benchmark class"),
                       ("report", "pseudo-mask mIoU vs GT per class and fold, with/without gate, all-foreground; PNG of examples")):
        q = psub.add_parser(name, help=text)
        dataset_flags(q)
        set_flag(q, None)
        device_flag(q)
        if name == "neighbours":
            q.add_argument("class_name", metavar="CLASS")
            q.add_argument("--top", type=int, default=10)
        if name == "train-cam":
            q.add_argument("--imagenet", type=Path, default=None, metavar="DIR",
                           help="train the paper's CAM instead: a VGG on an ImageNet-layout folder (train/<wnid>/*.JPEG) "
                                "without the benchmark's classes and hyponyms")
            q.add_argument("--benchmark", choices=("pascal", "coco"), default="pascal", help="whose classes to leave out")
            q.add_argument("--synsets", type=Path, default=None, help="LOC_synset_mapping.txt (default: DIR/LOC_synset_mapping.txt)")
            q.add_argument("--out", type=Path, default=None, help="weight file to write (default: cache/cam/<arch>-<benchmark>-free.pth)")
            q.add_argument("--arch", default="vgg16")
            q.add_argument("--epochs", type=int, default=90)
            q.add_argument("--batch", type=int, default=64)
            q.add_argument("--lr", type=float, default=0.01)
            q.add_argument("--size", type=int, default=224)
            q.add_argument("--max-per-class", type=int, default=0, help="cap images per synset (0: all)")
        if name == "report":
            results_flag(q)
            q.add_argument("--figure", type=Path, default=None, help="examples PNG (default results/<dataset>/pseudo-labels/<fp>.png)")
            q.add_argument("--split", choices=("train", "val", "both"), default="both")
    return {"backbone": cmd_backbone, "trunk": cmd_trunk, "pseudo": cmd_pseudo}


def cmd_pseudo(args, cache: Path) -> int:
    from bench.cli import pseudo
    from bench.data.datasets import get_dataset

    if args.pseudo_command == "train-cam" and args.imagenet:
        return pseudo.train_imagenet_cam(args, cache)
    dataset = get_dataset(args.dataset, cache, args.data_root)
    return pseudo.COMMANDS[args.pseudo_command](args, dataset, cache)


def cmd_backbone(args, cache: Path) -> int:
    from backbones.features import FeatureCache
    from backbones.pretrain import backbone_config, pretrained_backbone
    from bench.data.datasets import find_pool, get_dataset

    if args.backbone_command == "pretrain" and args.layout:
        return pretrain_on_user_set(args, cache)
    dataset = get_dataset(args.dataset, cache, args.data_root)
    model, meta, path = pretrained_backbone(find_pool(dataset), backbone_config(parse_overrides(args.overrides)), cache)
    if args.backbone_command == "pretrain":
        if "val_miou" in meta:
            print(f"DeepLabV3+ {meta['arch']} pretrained on the pool in {meta['train_s']:.0f} s: held-out mIoU "
                  f"{meta['val_miou']:.1f}%, object-vs-background IoU {meta.get('val_object_iou', float('nan')):.1f}%, "
                  f"pixel accuracy {meta['val_pixel_acc']:.1f}%")
        print(f"weights: {path}")
        return 0
    ids = dataset.ids("train") + dataset.ids("val")
    # keyed as `ours` keys it (the weights' id, not their path): a store `ours` then reads instead of recomputing
    features = FeatureCache(dataset.image_store(ids), model, meta["weights_id"], cache)
    features.ensure(ids)
    print(f"features of {len(ids)} images at {features.root}")
    return 0


def cmd_trunk(args, cache: Path) -> int:
    from backbones.trunks import TrunkConfig, pretrained_vgg16
    from bench.core.settings import settings_from
    from bench.data.datasets import find_pool, get_dataset

    dataset = get_dataset(args.dataset, cache, args.data_root)
    _, meta = pretrained_vgg16(find_pool(dataset), settings_from(TrunkConfig, parse_overrides(args.overrides), "trunk"), cache)
    if "val_top1" in meta:
        print(f"VGG-16 trunk (width {meta['width']:g}) pretrained on pool crops in {meta['train_s']:.0f} s: "
              f"held-out top-1 {meta['val_top1']:.1f}% over the pool's classes")
    return 0


def pretrain_on_user_set(args, cache: Path) -> int:
    """`bench backbone pretrain --dataset DIR --layout ...`: DeepLabV3+ on a user's set without the
    benchmark's classes (backbones/external.py), its class list beside the weights."""
    import hashlib
    import shutil

    from backbones.external import pretraining_set
    from backbones.pretrain import backbone_config, pretrained_backbone
    from bench.core.files import atomic_write_text
    from bench.data.classes import COCO_CLASSES, VOC_CLASSES

    root = Path(args.dataset).resolve()
    if not root.is_dir():
        from bench.core.errors import BenchError

        raise BenchError(f"--dataset {args.dataset} is not a folder; with --layout it is your segmentation set's root")
    tag = hashlib.sha256(f"{root}|{args.layout}|{args.benchmark}|{args.size}".encode()).hexdigest()[:12]
    benchmark = VOC_CLASSES if args.benchmark == "pascal" else COCO_CLASSES
    pool, summary = pretraining_set(root, args.layout, benchmark, Path(cache) / "pretraining" / f"{root.name}-{tag}", args.size)
    model, meta, path = pretrained_backbone(pool, backbone_config(parse_overrides(args.overrides)), cache)
    out = args.out or path
    if args.out:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
    atomic_write_text(Path(str(out) + ".classes.txt"), "\n".join(summary["kept"]) + "\n")
    print(f"{root}: {len(summary['kept'])} classes kept, {len(summary['ignored'])} set to ignore as {args.benchmark} classes "
          f"({', '.join(summary['ignored'][:6])}), {summary['images']} images, {summary['dropped']} dropped as dominated by them")
    print(f"DeepLabV3+ {meta['arch']}: held-out mIoU {meta.get('val_miou', float('nan')):.1f}% -> {out} (classes in "
          f"{out}.classes.txt); use it with --set backbone_arch={meta['arch']} backbone_checkpoint={out}")
    return 0
