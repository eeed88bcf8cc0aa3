"""A fit's learning curve and the one convergence rule every method is judged by.

A method's training loop calls `curve.step(step, loss)` after each step (`curve` comes from its
`FitView`, `train.curve(total_steps, self)`). The curve keeps the mean loss of every
`LOSS_EVERY` steps and, at `VALIDATION_POINTS` evenly spaced steps (the last one included), a
validation score: foreground IoU (%) on a fixed set of `VALIDATION_EPISODES` 1-way 1-shot episodes
of base classes drawn from the fold's training images, masks from the training annotations (pseudo
masks in weak mode: the method's own supervision; never a test class, a test image or, in weak
mode, a GT mask). The episodes are held out in the sense that training never draws them (a separate
seed), not their images: the score says whether the fit still learns, not how it generalises.

Validation leaves the fit as it was: the torch and numpy global random states are restored, every
module's train/eval flag is put back, and the method's `clear_caches()` (if any) forgets what it
memoised with the half-trained weights. So a fit with a curve gives the same weights as one without
(tests/test_curves.py checks it on `ours`).

The rule (`verdict`): a fit has converged when its validation score gained less than
`MIN_GAIN` points over the last quarter of its steps, or when that gain is within the validation's
noise: below `NOISE_SE` standard errors of the gain, estimated by resampling the validation
episodes (paired: the same resample at both points, `BOOTSTRAP` draws, a fixed seed). The gain is
measured to the last point from every point of the last quarter (the point at 3/4 of the steps
and any later one), not from its first alone: a curve that swings (PFENet on the embedded default
jumps between "background everywhere" and a segmentation, 30 -> 5 -> 30) would otherwise pass
whenever the 3/4 point happens to sit on a crest. A drop to the last point is not learning and
passes (PANet's 21.9 -> 20.9 at the end of a fold); the curves' figure shows it. The verdict
reports the largest of those gains, learning or not, so a fall from the 3/4 point followed by a rise
within the noise is read as "within noise", not as a plain plateau.
50 episodes give a pooled foreground IoU that moves by a few points between neighbouring steps of
a plateaued fit (ours, weak, fold 0 after the loss fix:
34.5 31.3 34.5 34.4 30.7 33.6 33.8 36.5), so a 1-point rule alone judged the last point's noise.
A curve stored without per-episode counts (fits before this rule) is judged by the gain alone.
Each validation point and, after the last step, the verdict are printed on stderr as they come
(`progress.say`), so a fit's log shows whether it converged without opening its record.
Fits without steps (`ours-noE`: nothing is trained) are "no training"; checkpoints made before curves
existed are "no curve". Every record carries the curve and the verdict; tables mark a row whose fit
did not converge, and `bench claims` says which claims stand on such rows.

A fit that passes only by the noise clause (it gained `MIN_GAIN` or more, within `NOISE_SE` SE) has
not shown a plateau: its validation is too noisy to tell one from a slow rise (PFENet on
`openmoji20i`, full fold 1: 0.0 ... 31.6 36.6 43.1, +11.5 with SE 6.6). The verdict says so
(`within_noise`), and tables and claims mark such cells apart ("≈") without changing the verdict:
the rule stays the one every recorded fit was judged by."""
from __future__ import annotations

import math
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.core.progress import say

LOSS_EVERY = 25
VALIDATION_POINTS = 8
VALIDATION_EPISODES = 50
VALIDATION_SEED = 97_531  # never a training or test episode seed
MIN_GAIN = 1.0  # IoU points over the last quarter of the steps
NOISE_SE = 2.0  # a gain below this many bootstrap standard errors is noise, not learning
BOOTSTRAP = 1000
BOOTSTRAP_SEED = 13_579
RULE = (f"converged: validation foreground IoU gained < {MIN_GAIN:g} point over the last quarter of the steps "
        f"(from each of its points to the last), or less than {NOISE_SE:g} bootstrap standard errors of that gain "
        f"({VALIDATION_EPISODES} fixed 1-way 1-shot base-class episodes of training images, training masks)")


@dataclass
class FitCurve:
    total: int
    loss: list = field(default_factory=list)  # [step, mean finite loss since the previous entry, non-finite steps]
    validation: list = field(default_factory=list)  # [step, foreground IoU %]
    episodes: list = field(default_factory=list)  # per validation point: [[intersection, union] per episode]
    _sum: float = 0.0
    _n: int = 0
    _bad: int = 0

    def points(self) -> list[int]:
        """The steps after which validation runs: VALIDATION_POINTS evenly spaced, the last step included."""
        k = min(VALIDATION_POINTS, self.total)
        return sorted({round(self.total * (i + 1) / k) for i in range(k)}) if self.total else []

    def add_loss(self, step: int, value) -> None:
        """A step's loss. An infinite or NaN loss is counted, not averaged: one would hide the others,
        and a count says how often a method's loss is undefined (a defect worth seeing)."""
        value = float(value.detach()) if hasattr(value, "detach") else float(value)
        if math.isfinite(value):
            self._sum += value
            self._n += 1
        else:
            self._bad += 1
        if step % LOSS_EVERY == 0 or step == self.total:
            self.loss.append([step, round(self._sum / self._n, 6) if self._n else None, self._bad])
            self._sum, self._n, self._bad = 0.0, 0, 0

    def nonfinite_steps(self) -> int:
        return sum(entry[2] for entry in self.loss if len(entry) > 2)

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return {**d, "nonfinite_loss_steps": self.nonfinite_steps(), "verdict": verdict(self.validation, self.total, self.episodes)}


def verdict(validation: list, total: int, episodes: list | None = None) -> dict:
    """The rule applied to [step, score] points (and, when given, each point's per-episode
    [intersection, union] counts): {"converged": bool | None, "gain": points, "se": its standard
    error or None, "why": text}."""
    if not total:
        return {"converged": None, "why": "no training"}
    if len(validation) < 2:
        return {"converged": None, "why": "too few validation points"}
    steps = [s for s, _ in validation]
    start = min(range(len(steps)), key=lambda i: abs(steps[i] - 0.75 * total))
    if start == len(steps) - 1:
        start -= 1
    paired = bool(episodes) and len(episodes) == len(validation)
    pairs = [_gain(validation, episodes if paired else None, j) for j in range(start, len(steps) - 1)]
    learning = [p for p in pairs if p["learning"]]
    # the pair the verdict stands on: the largest gain among the learning pairs, else among all (a
    # plateau's report must not hide a later pair that passed only by the noise clause)
    worst = max(learning or pairs, key=lambda p: p["gain"])
    small = worst["gain"] < MIN_GAIN
    # the text is formatted from the stored (rounded) values, so that it and every display of the
    # stored gain (the curves figure's legend) agree: 6.9499 stored as 6.95 reads +7.0 in both
    gain, se = round(worst["gain"], 2), None if worst["se"] is None else round(worst["se"], 2)
    span = f"{gain:+.1f} IoU points from step {steps[worst['from']]} to {steps[-1]}"
    if se is not None:
        span += f" (bootstrap SE {se:.1f})"
    why = (f"{span}: still learning: not below {MIN_GAIN:g}" + (f" and beyond {NOISE_SE:g} SE" if se is not None else "") if learning else
           f"{span}: below {MIN_GAIN:g}, converged" if small else
           f"{span}: within {NOISE_SE:g} SE, no evidence of learning, converged")
    return {"converged": not learning, "gain": gain, "se": se,
            "from_step": steps[worst["from"]], "to_step": steps[-1], "why": why,
            "within_noise": not learning and not small}


def _gain(validation: list, episodes: list | None, j: int) -> dict:
    """The gain from point j to the last, its bootstrap SE (None without per-episode counts), and
    whether it is learning by the rule (at least MIN_GAIN and at least NOISE_SE standard errors)."""
    gain = validation[-1][1] - validation[j][1]
    se = gain_se(episodes[j], episodes[-1]) if episodes else None
    return {"from": j, "gain": gain, "se": se,
            "learning": gain >= MIN_GAIN and not (se is not None and gain < NOISE_SE * se)}


def judged(fit: dict) -> dict:
    """A stored fit (a record's or a checkpoint's `fit`) with its verdict re-derived from its stored
    curve by the current rule, so a rule change re-tables old records without re-running them."""
    if not fit or not fit.get("validation") or not fit.get("total"):
        return fit
    return {**fit, "verdict": verdict(fit["validation"], fit["total"], fit.get("episodes"))}


def gain_se(before: list, after: list) -> float:
    """Standard error of the pooled-IoU gain between two validation points on the same episodes:
    the episodes resampled with replacement, the same draw at both points."""
    import numpy as np

    a, b = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    idx = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(a), (BOOTSTRAP, len(a)))

    def pooled(counts):
        inter, union = counts[idx, 0].sum(1), counts[idx, 1].sum(1)
        return 100.0 * inter / np.maximum(union, 1)

    return float((pooled(b) - pooled(a)).std(ddof=1))


def no_curve(why: str) -> dict:
    return {"loss": [], "validation": [], "verdict": {"converged": None, "why": why}}


def pooled_iou(counts) -> float:
    """Foreground IoU (%) pooled over episodes' [intersection, union] counts."""
    union = sum(u for _, u in counts)
    return 100.0 * sum(i for i, _ in counts) / union if union else 0.0


class Tracker:
    """What a training loop talks to: `step(i, loss)` with i counted from 1. Validation runs through
    `score(predict)` (FitView's `validation_counts`: [intersection, union] per fixed episode), with
    the method's state protected."""

    def __init__(self, total: int, method, score, snapshot: Path | None = None):
        self.curve = FitCurve(total)
        self._method, self._score = method, score
        self._due = set(self.curve.points())
        self._started = time.perf_counter()
        self._before = 0.0  # loop seconds of the runs a resumed fit continues
        self._snapshot, self._loop = (Path(snapshot) if snapshot else None), None
        self.seconds: float | None = None  # the loop's wall time (its steps and validations), once its last step ran
        self.resumed_at: list[int] = []  # the steps this fit was resumed from (kept out of the curve, as times are)

    def resume(self, **loop) -> int:
        """Registers what the training loop carries from step to step (modules, optimiser, scheduler:
        anything with state_dict/load_state_dict; numpy Generators) and restores it from the fit's
        snapshot when there is one; the number of steps already done. A snapshot is written after
        every validation point but the last, once validation has cleared the method's memos, so a
        fit killed between two points resumes at the first of them and ends bit for bit as one that
        ran through (tests/test_resume.py); one made under other CPU pins or another length is not
        used: the fit starts over."""
        self._loop = loop
        state = self._usable_snapshot()
        if state is None:
            return 0
        for name, obj in loop.items():
            _load_part(obj, state["loop"][name])
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.curve = FitCurve(**state["curve"])
        self._before, self.resumed_at = state["seconds"], [*state["resumed_at"], state["step"]]
        self._started = time.perf_counter()
        say(f"resuming the fit at step {state['step']}/{self.curve.total} from {self._snapshot}")
        return state["step"]

    def _usable_snapshot(self) -> dict | None:
        from bench.core.pinning import pinning

        if self._snapshot is None or not self._snapshot.is_file():
            return None
        try:
            state = pickle.loads(self._snapshot.read_bytes())
        except Exception as exc:  # a snapshot is a shortcut, never needed: a bad one costs a fresh start
            say(f"fit snapshot {self._snapshot} unreadable ({type(exc).__name__}): starting the fit over")
            return None
        if state.get("total") != self.curve.total or state.get("pinning") != pinning() or set(state["loop"]) != set(self._loop):
            say(f"fit snapshot {self._snapshot} was made by another fit (length, CPU pins or loop): starting over")
            return None
        return state

    def _write_snapshot(self, step: int) -> None:
        from bench.core.files import atomic_write_bytes
        from bench.core.pinning import pinning

        torch = sys.modules.get("torch")
        state = {"step": step, "total": self.curve.total, "curve": asdict(self.curve), "pinning": pinning(),
                 "loop": {name: _part_state(obj) for name, obj in self._loop.items()},
                 "torch_rng": torch.get_rng_state() if torch is not None else None,
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch is not None and torch.cuda.is_available() else None,
                 "seconds": self._before + time.perf_counter() - self._started, "resumed_at": self.resumed_at}
        atomic_write_bytes(self._snapshot, pickle.dumps(state))

    def step(self, step: int, loss) -> None:
        self.curve.add_loss(step, loss)
        if step in self._due:
            counts = self._validate()
            score = pooled_iou(counts)
            self.curve.validation.append([step, round(score, 3)])
            self.curve.episodes.append([[int(i), int(u)] for i, u in counts])
            say(f"validation at step {step}/{self.curve.total}: base-class foreground IoU {score:.1f}")
            if self._loop is not None and self._snapshot is not None and step < self.curve.total:
                self._write_snapshot(step)
        if step == self.curve.total:  # kept out of the curve: two equal fits have equal curves, not equal times
            self.seconds = self._before + time.perf_counter() - self._started
            judged_now = verdict(self.curve.validation, self.curve.total, self.curve.episodes)
            say(f"fit {'converged' if judged_now['converged'] else 'NOT converged' if judged_now['converged'] is False else 'unjudged'}: "
                f"{judged_now['why']}")

    def _validate(self) -> list:
        torch = sys.modules.get("torch")
        modes = _module_modes(self._method)
        states = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch and torch.cuda.is_available() else None) if torch else None
        import numpy as np

        np_state = np.random.get_state()
        try:
            return self._score(self._method.predict)
        finally:
            np.random.set_state(np_state)
            if states:
                torch.set_rng_state(states[0])
                if states[1] is not None:
                    torch.cuda.set_rng_state_all(states[1])
            for module, flag in modes:
                module.train(flag)
            if hasattr(self._method, "clear_caches"):
                self._method.clear_caches()


def _part_state(obj):
    return obj.bit_generator.state if hasattr(obj, "bit_generator") else obj.state_dict()


def _load_part(obj, state) -> None:
    if hasattr(obj, "bit_generator"):
        obj.bit_generator.state = state
    else:
        obj.load_state_dict(state)


def _module_modes(method) -> list:
    """(module, training flag) of every torch module the method holds, submodules included."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    found = []
    for value in vars(method).values():
        if isinstance(value, torch.nn.Module):
            found += [(m, m.training) for m in value.modules()]
    return found
