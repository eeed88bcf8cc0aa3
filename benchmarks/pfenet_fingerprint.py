"""Where two machines of the kind part on PFENet, at the embedded default's real shapes.

PFENet's 32,000-step fits differ between two 2-core "AMD EPYC" machines whose pool nets, `ours`
fits and 4-step mini-set fits (tests/test_pinning.py) agree to the bit (README, Table 2a). This
prints fingerprints along PFENet's path on `openmoji5i`, in the order the data flows, so a session
on another machine finds the first one that differs:
  1. the frozen trunk's weights (the pool-pretrained DeepLabV3+ ResNet, re-dilated);
  2. its stored outputs for the fold's first training images (the feature store's bytes);
  3. for each of a few short fits (fresh FEM, the embedded defaults but `steps`), the FEM's
     weights and its loss curve (means of every 25 steps): the shortest fit that differs brackets
     the step at which training parts.
Run after the main job has built the cache (the trunk is built here if missing, ≈ 8–18 min):

    python benchmarks/pfenet_fingerprint.py [--fold 2] [--steps 1,25,400,2000] [--cache-dir cache]
        [--compare benchmarks/pfenet_fingerprint.json] [--write FILE]

--compare prints each fingerprint beside the committed one (made on the machine where the README's
fold 2-3 PFENet fits were made; its CPU signature is in the file) and exits 1 if any differs.
Validation runs on 5 episodes (it does not move the weights, tests/test_curves.py)."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import bench  # noqa: F401 - first, as the CLI does: the pins are set before torch or numpy load

STORED_IMAGES = 32


def store_sha(root: Path, ids: list) -> str:
    """sha256 (16 hex) of the stored trunk outputs of `ids`, in that order (every size stored)."""
    h = hashlib.sha256()
    for i in ids:
        for f in sorted(root.glob(f"*/{i}.npy")):
            h.update(f"{f.parent.name}/{f.name};".encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def fit_prints(train, steps: int) -> dict:
    """A fresh PFENet fit of `steps` steps at the embedded defaults: its FEM's and loss curve's sha."""
    from bench.core.files import state_sha
    from bench.core.pinning import fixed_threads
    from methods.pfenet import Pfenet

    model = Pfenet(steps=steps)
    with fixed_threads():  # as the runner fits
        model.fit(train, {})
    loss = train.fit_curve()["loss"]  # once: the curve's dict carries a bootstrapped verdict
    return {"fem": state_sha(model.state_dict()["fem"]), "loss": hashlib.sha256(json.dumps(loss).encode()).hexdigest()[:16],
            "last_loss": loss[-1][1]}


def fingerprints(cache: Path, fold: int, steps: list[int]) -> dict:
    from bench.core import curves
    from bench.core.files import state_sha
    from bench.data.datasets import get_dataset
    from bench.harness.annotations import annotation_source
    from bench.harness.presets import get_preset
    from bench.harness.views import FitView
    from methods.pfenet import Pfenet

    curves.VALIDATION_EPISODES = 5
    dataset = get_dataset("openmoji5i", cache)
    train = FitView(dataset, annotation_source("full", dataset, cache), get_preset("wacv22"), fold, cache)
    probe = Pfenet()
    probe.attach(train)
    out = {"trunk": {"name": probe._trunk_name, "weights": state_sha(probe.trunk.state_dict())},
           "store": store_sha(probe.features.root, train.ids[:STORED_IMAGES])}
    for n in steps:
        out[f"fit_{n}"] = fit_prints(train, n)
        print(f"fit of {n} steps: {out[f'fit_{n}']}", file=sys.stderr)
    return out


def flat(d: dict, prefix: str = "") -> dict:
    return {k2: v2 for k, v in d.items() for k2, v2 in (flat(v, f"{prefix}{k}.").items() if isinstance(v, dict)
                                                      else [(f"{prefix}{k}", v)])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", type=int, default=2, help="fold 2 full: the fit that differed between two machines")
    ap.add_argument("--steps", default="1,25,400,2000", help="comma-separated fit lengths")
    ap.add_argument("--cache-dir", type=Path, default=Path("cache"))
    ap.add_argument("--compare", type=Path, help="a file written by --write")
    ap.add_argument("--write", type=Path, help="write the fingerprints and this CPU's signature here")
    args = ap.parse_args()
    from bench.core.files import cpu_signature
    from bench.core.pinning import pinning

    steps = [int(s) for s in args.steps.split(",")]
    if args.compare and not args.compare.is_file():
        sys.exit(f"{args.compare}: no such file; fix: --compare benchmarks/pfenet_fingerprint.json (or a file --write made)")
    want = json.loads(args.compare.read_text()) if args.compare else None
    if want and (want["fold"], want["steps"]) != (args.fold, steps):  # before minutes of fitting
        sys.exit(f"{args.compare} was made for fold {want['fold']}, steps {want['steps']}; "
                 f"fix: run with --fold {want['fold']} --steps {','.join(map(str, want['steps']))}")
    got = {"fold": args.fold, "steps": steps, "prints": fingerprints(args.cache_dir, args.fold, steps)}
    print(json.dumps(got["prints"], indent=1))
    if args.write:
        args.write.write_text(json.dumps({**got, "cpu": cpu_signature(), "pinning": pinning()}, indent=1) + "\n")
    if want:
        mine, theirs = flat(got["prints"]), flat(want["prints"])
        differ = [k for k in theirs if mine.get(k) != theirs[k]]
        for k in theirs:
            print(f"{'same   ' if k not in differ else 'DIFFERS'} {k}: {mine.get(k)} (theirs {theirs[k]})")
        print(f"their CPU: {want['cpu']}\nthis CPU: {cpu_signature()}")
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
