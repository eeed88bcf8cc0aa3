"""Where two machines part on the pool nets, in the order the data flows.

Made to find why an Intel Xeon (family 6 model 207) and an AMD EPYC (family 25 model 17) trained
other pool nets from the same code, seed and thread count: torch's unfused Adam, its square roots
MKL's (README, "Across vendors"; fixed by bench/core/optim.py, and every machine of the kind is now
expected to print the committed lines). The brief fits of tests/test_pinning.py only say *that* the
CAM and saliency nets differ on a machine. This says *where*: it
trains them as that test does (the mini set's pool, one epoch per stage) and prints, in order,
  1. the data: the pool's images, masks and labels as loaded (the embedded set is drawn on each
     machine: emoji rendering and geometry are this machine's too);
  2. for the first step of each training stage: the augmented input batch, the output of every
     layer of the forward pass (module by module, as registered), the loss, and the gradient of
     every weight (in the order backward reaches them), then the weights after that step and the
     next;
  3. the weights after each stage and after the whole brief fit (equal to the golden hashes of
     tests/data/golden_pool_fits.json where the machine reproduces them).
The first line that differs between two machines names the operation (a layer's output: its
forward kernel; a weight's gradient: its backward; a step's weights with equal gradients: the
optimizer's arithmetic, MKL's vector math) or the data.

    python benchmarks/pool_fingerprint.py [--nets saliency,cam] [--cache-dir DIR]
        [--compare benchmarks/pool_fingerprint.json] [--write FILE]

--compare prints each line beside the committed one (made on the CPU named in the file) and exits 1
at any difference, naming the first; --write keeps this machine's prints and CPU signature. The mini
set is drawn under --cache-dir (default: a temporary folder; ≈ 10 s), the fits take ≈ 30 s on 2
cores."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repository
import bench  # noqa: E402,F401 - first, as the CLI does: the pins are set before torch or numpy load

NETS = ("saliency", "cam")
BRIEF = {"cam_crop_epochs": 1, "cam_epochs": 1, "saliency_epochs": 1}  # tests/pinning_probe.py's fits
STEPS_KEPT = 2  # weights after the first steps of each stage


def sha(*arrays) -> str:
    """sha256 (16 hex) of arrays' or tensors' raw bytes, dtypes and shapes, in order."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = a.detach().cpu().contiguous().numpy() if hasattr(a, "detach") else np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class StageRecorder:
    """Hooks one training stage's net and optimizer: the first step's input, layer outputs, loss
    and gradients, and the weights after its first STEPS_KEPT steps, into `prints` under `stage`."""

    def __init__(self, prints: dict, stage: str, net):
        from torch.optim import optimizer

        self.prints, self.stage, self.net, self.steps = prints, stage, net, 0
        names = {m: n for n, m in net.named_modules() if n and not list(m.children())}
        self.hooks = [net.register_forward_pre_hook(lambda m, args: self.put("input", args[0]))]
        self.hooks += [m.register_forward_hook(lambda m, args, out, n=n: self.put(f"forward.{n}", out)) for m, n in names.items()]
        self.hooks += [optimizer.register_optimizer_step_pre_hook(self.before_step),
                       optimizer.register_optimizer_step_post_hook(self.after_step)]

    def put(self, key: str, value) -> None:
        if self.steps == 0 and f"{self.stage}.step1.{key}" not in self.prints:  # the first forward only
            self.prints[f"{self.stage}.step1.{key}"] = sha(value)

    def before_step(self, opt, args, kwargs) -> None:
        if self.steps == 0:
            named = [(n, p) for n, p in self.net.named_parameters() if p.grad is not None]
            for n, p in reversed(named):  # roughly the order backward reaches them
                self.prints[f"{self.stage}.step1.grad.{n}"] = sha(p.grad)

    def after_step(self, opt, args, kwargs) -> None:
        from bench.core.files import state_sha

        self.steps += 1
        self.prints[f"{self.stage}.step{self.steps}.weights"] = state_sha(self.net.state_dict())
        if self.steps == STEPS_KEPT:
            self.close()

    def close(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []


def recorded_fits(pool, nets: list[str]) -> dict:
    """Trains each net as the brief fits do, with every stage recorded (pseudo_labels/train.py's
    `_fit` is wrapped: the stages are those of the real training code, not a copy of it)."""
    from bench.core.files import state_sha
    from bench.core.pinning import fixed_threads
    from pseudo_labels import train
    from pseudo_labels.config import pseudo_config

    prints: dict = {}
    real_fit, cfg = train._fit, pseudo_config(BRIEF)

    def fit(name):
        count = [0]

        def wrapped(net, batches, lr, rng, desc, step_loss):
            count[0] += 1
            stage = f"{name}.stage{count[0]}"
            recorder = StageRecorder(prints, stage, net)
            try:
                real_fit(net, batches, lr, rng, desc, step_loss)
            finally:
                recorder.close()
            prints[f"{stage}.weights"] = state_sha(net.state_dict())
        return wrapped

    trainers = {"saliency": train.train_saliency, "cam": train.train_cam}
    try:
        for name in nets:
            train._fit = fit(name)
            with fixed_threads():  # as the cached builders train
                net, _ = trainers[name](pool, cfg)
            prints[f"{name}.weights"] = state_sha(net.state_dict())
            print(f"{name}: {prints[f'{name}.weights']}", file=sys.stderr)
    finally:
        train._fit = real_fit
    return prints


def fingerprints(cache: Path, nets: list[str]) -> dict:
    from bench.data.datasets import embedded_dataset, mini_spec, pool_dataset
    from pseudo_labels.train import pool_arrays

    pool = pool_dataset(embedded_dataset(cache, mini_spec(), "openmoji5i-mini"))
    arrays = pool_arrays(pool, "train")
    data = {"data.pool_train.images": sha(arrays.images), "data.pool_train.masks": sha(arrays.masks),
            "data.pool_train.labels": sha(arrays.labels)}
    return {**data, **recorded_fits(pool, nets)}


def differences(mine: dict, theirs: dict) -> list[str]:
    """Keys whose prints differ (or that one side lacks), in the other file's order."""
    return [k for k in theirs if mine.get(k) != theirs[k]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS), help="comma-separated: saliency, cam")
    ap.add_argument("--cache-dir", type=Path, help="where the mini set is drawn (default: a temporary folder)")
    ap.add_argument("--compare", type=Path, help="a file written by --write")
    ap.add_argument("--write", type=Path, help="write the prints and this CPU's signature here")
    args = ap.parse_args(argv)
    nets = [n for n in args.nets.split(",") if n]
    if unknown := [n for n in nets if n not in NETS]:
        sys.exit(f"--nets {','.join(unknown)}: not a pool net; fix: one or more of {', '.join(NETS)}")
    if args.compare and not args.compare.is_file():
        sys.exit(f"{args.compare}: no such file; fix: --compare benchmarks/pool_fingerprint.json (or a file --write made)")
    want = json.loads(args.compare.read_text()) if args.compare else None
    if want and want["nets"] != nets:
        sys.exit(f"{args.compare} was made for --nets {','.join(want['nets'])}; fix: run with that")
    from bench.core.files import cpu_signature
    from bench.core.pinning import pinning

    with tempfile.TemporaryDirectory() as tmp:
        prints = fingerprints(args.cache_dir or Path(tmp), nets)
    if args.write:
        args.write.write_text(json.dumps({"nets": nets, "prints": prints, "cpu": cpu_signature(), "pinning": pinning()},
                                         indent=1) + "\n")
    if not want:
        print(json.dumps(prints, indent=1))
        return 0
    differ = differences(prints, want["prints"])
    for k in want["prints"]:
        print(f"{'DIFFERS' if k in differ else 'same   '} {k}: {prints.get(k)} (theirs {want['prints'][k]})")
    print(f"their CPU: {want['cpu']}\nthis CPU: {cpu_signature()}")
    if differ:
        print(f"first difference: {differ[0]}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
