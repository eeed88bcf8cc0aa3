"""Training steps/s and evaluation episodes/s of every method on a device, beside the CPU in the
same run (the ratio is the speed-up).

    python benchmarks/device.py [--device cuda] [--dataset openmoji5i-mini] [--method panet ...]
        [--episodes 40] [--steps 20] [--cache-dir cache]

Per method and device: two fits of `--steps` and 2 x `--steps` training steps (PANet iterations,
AMP steps, PFENet steps, `ours` meta-training episodes); steps/s is the difference of the two fit
times over the extra steps, so one-time work (trunk pretraining, feature caches, loading) is not
counted. Then `--episodes` test episodes of the `quick` preset (fold 0, 1-way 1-shot) with the
longer fit: episodes/s includes building each episode (reading images, masks) as the runner does.
One-time pretraining uses small settings (a speed check, not a number to report).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.harness.annotations import annotation_source
from bench.data.datasets import get_dataset
from bench.core.device import use_device
from bench.harness.episodes import build_episode_input, load_or_sample_episodes
from bench.harness.views import FitView
from bench.harness.presets import get_preset
from bench.harness.registry import create_method

STEP_KEY = {"ours": "episodes", "panet": "iterations", "amp": "steps", "pfenet": "steps"}
ONE_TIME = {  # small pretraining: the benchmark times steps and episodes, not pretraining
    "ours": {"backbone_steps": 30, "backbone_max_images": 64},
    "ours-noE": {"backbone_steps": 30, "backbone_max_images": 64},
    "panet": {"trunk_epochs": 1},
    "amp": {"trunk_epochs": 1},
    "pfenet": {"backbone_steps": 30, "backbone_max_images": 64},
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_fit(name: str, steps: int, train, device) -> tuple[object, float]:
    config = dict(ONE_TIME[name])
    if name in STEP_KEY:
        config[STEP_KEY[name]] = steps
    method = create_method(name, config)
    start = time.perf_counter()
    method.fit(train, {})
    synchronize(device)
    return method, time.perf_counter() - start


def method_speed(name: str, train, specs, dataset, annotations, preset, steps: int, device) -> tuple[float | None, float]:
    timed_fit(name, 1, train, device)  # one-time work: pretraining, feature caches
    _, short = timed_fit(name, steps, train, device)
    method, long = timed_fit(name, 2 * steps, train, device)
    steps_per_s = steps / max(long - short, 1e-9) if name in STEP_KEY else None
    start = time.perf_counter()
    for spec in specs:
        method.predict(build_episode_input(spec, dataset, annotations, preset))
    synchronize(device)
    return steps_per_s, len(specs) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    ap.add_argument("--dataset", default="openmoji5i-mini")
    ap.add_argument("--method", action="append", default=None, choices=tuple(ONE_TIME))
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = ap.parse_args()
    from tabulate import tabulate

    preset = get_preset("quick")
    dataset = get_dataset(args.dataset, args.cache_dir)
    annotations = annotation_source("full", dataset, args.cache_dir)
    train = FitView(dataset, annotations, preset, 0, args.cache_dir)
    specs = load_or_sample_episodes(args.cache_dir, preset, dataset, 0, 1, 1, preset.seed_base)[0][: args.episodes]
    target = use_device(args.device)
    devices = list(dict.fromkeys([torch.device("cpu"), target]))
    rows = []
    for name in args.method or list(ONE_TIME):
        speeds = {}
        for device in devices:
            use_device(str(device))
            speeds[device] = method_speed(name, train, specs, dataset, annotations, preset, args.steps, device)
            steps_s, eps_s = speeds[device]
            base_steps, base_eps = speeds[devices[0]]
            rows.append([name, str(device), "–" if steps_s is None else f"{steps_s:.2f}", f"{eps_s:.1f}",
                         "–" if steps_s is None else f"{steps_s / base_steps:.2f}x", f"{eps_s / base_eps:.2f}x"])
            print(tabulate(rows[-1:], tablefmt="plain"), flush=True)
    print(tabulate(rows, headers=["method", "device", "train steps/s", "episodes/s", "steps vs cpu", "episodes vs cpu"]))


if __name__ == "__main__":
    main()
