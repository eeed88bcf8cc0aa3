"""`bench data` (the embedded datasets) and `bench list` (methods, datasets, presets)."""
from __future__ import annotations

from pathlib import Path

from bench.cli.flags import dataset_flags

EMBEDDED = ("openmoji5i", "openmoji5i-mini", "openmoji20i", "openmoji20i-mini")
DATASET_NOTES = {"openmoji5i": "  (embedded default)", "openmoji5i-mini": "  (embedded, tiny: smoke runs and tests)",
                 "openmoji20i": "  (embedded COCO-like: 65 of the 80 COCO classes, COCO-20i folds)",
                 "openmoji20i-mini": "  (embedded COCO-like, tiny: tests)",
                 "pascal5i": "  (needs --data-root)", "coco20i": "  (needs --data-root)"}


def add_parsers(sub) -> dict:
    sub.add_parser("list", help="methods, datasets, presets")
    d = sub.add_parser("data", help="embedded dataset")
    dsub = d.add_subparsers(dest="data_command", required=True)
    prep = dsub.add_parser("prepare", help="generate the embedded dataset (done on first use otherwise)")
    prep.add_argument("--dataset", default="openmoji5i", choices=EMBEDDED)
    show = dsub.add_parser("show", help="PNG contact sheet of images with mask overlays")
    dataset_flags(show)
    show.add_argument("--split", default="train")
    show.add_argument("--n", type=int, default=32)
    show.add_argument("--out", type=Path, default=Path("openmoji5i_sheet.png"))
    return {"list": cmd_list, "data": cmd_data}


def cmd_list(args, cache: Path) -> int:
    from bench.data.datasets import DATASETS
    from bench.harness.presets import PRESETS
    from bench.harness.registry import METHODS, entry_point_methods

    print("methods:")
    for name in sorted(METHODS):
        print(f"  {name}")
    for name, source in sorted(entry_point_methods().items()):
        print(f"  {name}  (entry point {source})")
    print("  or any class as module:Class")
    print("datasets:\n  " + "\n  ".join(f"{d}{DATASET_NOTES[d]}" for d in DATASETS))
    print("presets:")
    for p in PRESETS.values():
        print(f"  {p.label():<16} {p.runs} x {p.episodes} episodes  {p.note}")
    return 0


def cmd_data(args, cache: Path) -> int:
    from bench.data.datasets import get_dataset

    if args.data_command == "prepare":
        ds = get_dataset(args.dataset, cache)
        print(f"{ds.name} ready at {ds.root} ({len(ds.ids('train'))} train, {len(ds.ids('val'))} val images)")
        return 0
    from bench.data.show import contact_sheet

    ds = get_dataset(args.dataset, cache, args.data_root)
    contact_sheet(ds, args.split, args.n, args.out)
    print(f"wrote {args.out}")
    return 0
