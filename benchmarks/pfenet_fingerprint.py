"""Where two machines of the kind part on PFENet, at the embedded default's real shapes.

PFENet's 32,000-step fits differ between two 2-core "AMD EPYC" machines whose pool nets, `ours`
fits and 4-step mini-set fits (tests/test_pinning.py) agree to the bit (README, "Every fit: pinned
CPU code paths"; results/published/HISTORY.md). This prints fingerprints along PFENet's path on
`openmoji5i`, in the order the data flows, so a session on another machine finds the first one that
differs:
  1. the frozen trunk's weights (the pool-pretrained DeepLabV3+ ResNet, re-dilated);
  2. its stored outputs for the fold's first training images (the feature store's bytes), and the
     same outputs computed afresh in one batch, as a machine would build its store;
  3. the single operations of a training step, each on fixed random inputs at the fit's shapes,
     named by the library that computes them: the prior's batched matrix product (MKL), layer4
     of one support and of four (oneDNN), one FEM forward and backward on a fixed prior (oneDNN's
     convolutions, ATen's pooling and resizing), and a linear layer (MKL's plain matrix product,
     which `ours`' fits use and which agreed across the two machines): where a fit differs, these
     name the library (another MKL branch moves the `mkl` lines only, another oneDNN ISA the
     `onednn` ones only: an Intel Xeon under the old MKL pin, AVX2, differed from the AMD EPYC in
     `mkl.linear` alone);
  4. for each of a few short fits (fresh FEM, the embedded defaults but `steps`), the FEM's
     weights and its loss curve (means of every 25 steps): the shortest fit that differs brackets
     the step at which training parts.
Run after the main job has built the cache (the trunk is built here if missing, ≈ 8–18 min):

    python benchmarks/pfenet_fingerprint.py [--fold 2] [--steps 1,25,400,2000] [--cache-dir cache]
        [--compare benchmarks/pfenet_fingerprint.json] [--write FILE] [--cpu-caches | --onednn-caches L1,L2,L3]

--compare prints each fingerprint beside the committed one (made on an AMD EPYC, family 25 model
17, under the fused Adam of 2fc1e13: its CPU signature and pins are in the file; the Intel Xeon's,
family 6 model 207, under the MKL pin of 81b73f8 and unfused Adam, is in git history: against it this
AMD's `kernels` lines differ only where they run the trunk, whose weights the recipe changed) and
exits 1 if any differs.
--cpu-caches runs it all on a CPU that reports other per-core caches to oneDNN (e.g. 32K,1M,16M, a
Zen 4's L1d; bench/core/onednn_view.py), which the pin then overrides: every line should match.
--onednn-caches makes oneDNN use them over the pin, as an unpinned CPU with them would. The store
is read from files, so what such a CPU would build shows in
`store_recomputed`: the first 32 stored images' outputs computed afresh in one batch (as a store is
built), float16 as stored; under the pin here it equals the stored arrays.
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


def recomputed_store_sha(probe, train) -> str:
    """sha256 (16 hex) of the fold's first STORED_IMAGES training images' trunk outputs computed
    now in one batch, rounded to float16 as a store keeps them."""
    import torch

    from bench.core.pinning import fixed_threads

    wanted = probe.features.wanted(train.ids[:STORED_IMAGES], train.train_size)
    shape = next(iter(wanted.values()))
    with fixed_threads():
        out = probe.features.compute([probe.features.image_at(i, shape) for i in wanted])
    return tensor_sha(out.to(torch.float16))


def tensor_sha(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def kernel_prints(probe) -> dict:
    """sha256 (16 hex) of each operation of a training step on fixed random inputs at the embedded
    fit's shapes (batch 4, 17 x 17 features), under the pinned thread count, named by the library
    that computes it (MKL_VERBOSE / ONEDNN_VERBOSE say so here)."""
    import torch

    from bench.core.pinning import fixed_threads
    from methods.pfenet import Fem, prior_mask, weighted_gap

    (c2, c3, c4), dim, grid = probe._widths, probe.cfg.reduce_dim, 17
    gen = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    q_high, s_high, q_mid, s_mid = rand(4, c4, grid, grid), rand(4, c4, grid, grid), rand(4, c2 + c3, grid, grid), rand(4, c2 + c3, grid, grid)
    mask, prior = (rand(4, 1, grid, grid) > 0).float(), rand(4, 1, grid, grid).sigmoid()
    layer4 = getattr(probe.trunk, probe.trunk.res_layers[-1])
    with fixed_threads(), torch.no_grad():
        out = {"mkl.prior_batched_matmul": tensor_sha(prior_mask(q_high, s_high, mask)),  # MKL's sgemm_batch
               "onednn.layer4_batch1": tensor_sha(layer4(rand(1, c3, grid, grid))),
               "onednn.layer4_batch4": tensor_sha(layer4(rand(4, c3, grid, grid)))}
    with fixed_threads():
        torch.manual_seed(0)  # the FEM's initial weights and its dropout
        fem = Fem(c2 + c3, dim).train()
        main, aux = fem(fem.down_query(q_mid), weighted_gap(fem.down_supp(s_mid), mask), prior)  # no MKL
        (main.square().mean() + sum(a.square().mean() for a in aux)).backward()
        out["onednn.fem_forward"] = tensor_sha(main, *aux)
        out["onednn.fem_grads"] = tensor_sha(*(p.grad for p in fem.parameters()))
        linear = torch.nn.Linear(c2 + c3, 64)
        y = linear(q_mid.flatten(2).transpose(1, 2).reshape(-1, c2 + c3))
        y.square().mean().backward()
        out["mkl.linear"] = tensor_sha(y, linear.weight.grad)  # MKL's sgemm, as `ours`' E uses it
    return out


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
           "store": store_sha(probe.features.root, train.ids[:STORED_IMAGES]),
           "store_recomputed": recomputed_store_sha(probe, train), "kernels": kernel_prints(probe)}
    for n in steps:
        out[f"fit_{n}"] = fit_prints(train, n)
        print(f"fit of {n} steps: {out[f'fit_{n}']}", file=sys.stderr)
    return out


def cache_sizes(text: str) -> list[int]:
    """'32K,1M,0' -> [32768, 1048576, 0] (bytes; 0 keeps a level). An argparse type, so that a bad
    value is refused before anything runs, under the name of the flag that gave it."""
    from bench.core.onednn_view import size_bytes

    try:
        return [size_bytes(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not cache sizes; fix: e.g. 32K,1M,16M") from None


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
    ap.add_argument("--cpu-caches", type=cache_sizes, help="a CPU reporting these per-core data caches, L1,L2[,L3] (bytes, or "
                    "with K / M: 32K,1M,16M), as oneDNN reads them before the pin")
    ap.add_argument("--onednn-caches", type=cache_sizes, help="caches oneDNN is to use over the pin, as an unpinned CPU with them would")
    args = ap.parse_args()
    from bench.core.files import cpu_signature
    from bench.core.pinning import pinning

    steps = [int(s) for s in args.steps.split(",")]
    if (args.onednn_caches or args.cpu_caches) and args.write:
        sys.exit("--write keeps this machine's fingerprints, not an imitation's; fix: drop --cpu-caches / --onednn-caches or --write")
    from bench.core import onednn_view
    from bench.core.pinning import at_torch_import

    if args.cpu_caches:  # before the pin, which runs when torch is imported (nothing here has imported it yet)
        at_torch_import(lambda: onednn_view.write(args.cpu_caches), first=True)
    import torch  # noqa: F401 - the pin (and a --cpu-caches CPU before it) is written now
    if args.onednn_caches:
        onednn_view.write(args.onednn_caches)
    print(f"oneDNN's per-core data caches: {onednn_view.view()['caches']} bytes; {pinning().get('onednn_view')}", file=sys.stderr)
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
