"""What a CPU fit's numbers depend on besides code, data and seed, pinned so that machines of one
kind (2 cores, AVX-512), Intel or AMD, train the same weights. Across vendors one more thing was
needed, outside this file: torch's unfused Adam took its square roots from MKL's vector math, whose
kernel under the pin refines `rsqrtps`, an instruction whose bits differ between Intel's and AMD's
silicon; every Adam is now fused, its square root IEEE-exact (bench/core/optim.py). Where MKL runs
one code on both vendors, an AMD EPYC trains an Intel Xeon's pool nets to the bit
(tests/test_pinning.py; README, "Across vendors").

Measured on the 2-core AMD EPYC (AVX-512, no AMX) this project runs on, three steps of a
DeepLabV3+ r18 fit (hash of the weights):
- the torch thread count changes the weights (1 vs 2 threads): float sums are split per thread;
- oneDNN's instruction set changes them (ONEDNN_MAX_CPU_ISA=AVX2 vs this CPU's AVX512_CORE_BF16;
  AVX512_CORE gives this CPU's default weights), and oneDNN picks it by CPU (an Intel CPU with AMX
  reports AVX512_CORE_AMX);
- MKL's code path: MKL_CBWR=COMPATIBLE, the one branch of MKL's conditional numerical
  reproducibility (CNR) that MKL documents for Intel and non-Intel CPUs alike. MKL serves more than
  matrix products here: torch computes sqrt, exp, log, tanh and erf of float tensors with MKL's
  vector math (VML), so Adam's step depended on MKL's path too (no longer: optim.py). The pin was AVX2 until
  2026-12-05: MKL runs that branch on an Intel CPU only and its own AUTO path on an AMD one, and a
  2-core Intel Xeon (family 6 model 207) then trained other pool nets than the AMD EPYC (family 26
  model 2) the README's numbers came from (sqrt, exp, log and the linear layers' sgemm all differ
  between MKL's AVX2, AVX-512 and COMPATIBLE branches; no branch an Intel CPU accepts computes what
  the AMD's AUTO computed). Told it runs on a non-Intel CPU (tests/pinning_probe.py), MKL on the
  Intel CPU computes under COMPATIBLE exactly what it computes natively: tests/test_pinning.py (one
  code on both vendors; its sqrt kernel still reads rsqrtps, whose bits are the silicon's: optim.py).
  Cost: matrix products 3-5x slower than the AVX2 branch (a 512-256-64 MLP step, PFENet's prior;
  oneDNN's convolutions, most of a fit, are not MKL's). Records keep the branch MKL ran (`mkl_cbwr`),
  and `mkl_not_pinned` where MKL refused the pin;
- ATen's own kernels (ATEN_CPU_CAPABILITY avx2 vs avx512) gave the same weights here; pinned to
  avx512 anyway, the capability of the kind;
- numpy's OpenBLAS picks a kernel by CPU (Zen vs SkylakeX); OPENBLAS_CORETYPE=Haswell fixes it
  (read when numpy loads: only effective if `bench` is imported before numpy).
- oneDNN's view of the CPU: it sizes some kernels' blocks by the per-core caches it reads from the
  CPU, and a Zen 4's 32 KB L1d instead of this CPU's 48 KB changes PFENet's trunk outputs (so its
  feature store and fits: two machines of the kind parted there). oneDNN has no setting for it;
  `bench.core.onednn_view` writes the kind's values (ONEDNN_VIEW) into oneDNN's CPU object when torch
  is imported, before any kernel is built.
What they cannot pin: a CPU without AVX-512 (oneDNN and ATen fall back to AVX2 and the weights
differ: `pinning()` says so) and oneDNN's view where it cannot be written (another torch build:
`pinning()` says so). Records keep
the CPU's family / model / stepping and cache sizes (`files.cpu_signature`), so two machines whose
fits differ can be told apart.
WSFSS_PIN=0 turns all of it off (each library's fastest path, the machine's core count);
WSFSS_THREADS sets the pinned thread count (default 2, the count the README's numbers used).
Every record keeps `pinning()`, and tests/test_pinning.py compares brief pool-net and method fits
with the hashes committed in tests/data/golden_pool_fits.json, with the CPUs they were made on."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from bench.core.optim import RECIPE  # torch-free: safe before torch loads

ENV_PINS = {
    "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
    "ATEN_CPU_CAPABILITY": "avx512",
    "MKL_CBWR": "COMPATIBLE",
    "OPENBLAS_CORETYPE": "Haswell",
}
DEFAULT_THREADS = 2
# oneDNN's view of the kind's CPU, this machine's own (CPU family 26 model 2): per-core L1d 48 KB,
# L2 1 MB, L3 16 MB (32 MB shared by its 2 cores); 1 thread per core, 2 cores
ONEDNN_VIEW = {"caches": [48 * 2**10, 2**20, 16 * 2**20], "cores": [1, 2]}
_state: dict = {}
_at_torch_import: list = []


def pinned() -> bool:
    return os.environ.get("WSFSS_PIN", "1").strip().lower() not in ("0", "false", "no", "off")


def apply_pins() -> None:
    """Sets the library pins in this process's environment (and so its spawned workers'). The
    libraries read them when they first run (torch's, oneDNN's, MKL's) or load (OpenBLAS), so this
    runs when `bench` is imported; a user's own value of a pinned variable is overridden, and kept
    in the record."""
    if _state or not pinned():
        return
    _state["overridden"] = {k: os.environ[k] for k in ENV_PINS if k in os.environ and os.environ[k] != ENV_PINS[k]}
    _state["loaded_before"] = sorted(m for m in ("torch", "numpy") if m in sys.modules)
    os.environ.update(ENV_PINS)
    at_torch_import(pin_onednn_view)


def pin_onednn_view() -> None:
    """Writes ONEDNN_VIEW into oneDNN (bench/core/onednn_view.py); where it cannot, the record says why."""
    from bench.core import onednn_view

    try:
        _state["onednn_view"] = {"cpu": onednn_view.write(**ONEDNN_VIEW), "pinned": dict(ONEDNN_VIEW)}
    except Exception as e:  # noqa: BLE001 - runs inside `import torch`, which must not fail for it; the record says why
        _state["onednn_view"] = {"not_pinned": e.args[0] if isinstance(e, onednn_view.ViewUnavailable) else f"{type(e).__name__}: {e}"}


def at_torch_import(fn, first: bool = False) -> None:
    """Runs fn() once torch is imported (now, if it is), after the functions already waiting or,
    `first`, before them: oneDNN's view must be written before it builds a kernel, and code that
    never imports torch stays torch-free. (tests/pinning_probe.py sets up another CPU's view first.)"""
    if first:
        _at_torch_import.insert(0, fn)
    else:
        _at_torch_import.append(fn)
    if "torch" in sys.modules:
        _run_at_torch_import()
    elif not any(isinstance(f, _AfterTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTorch())


def _run_at_torch_import() -> None:
    while _at_torch_import:
        _at_torch_import.pop(0)()


class _AfterTorch:
    """An import finder that lets Python find torch as usual, then runs the waiting functions
    when torch's module has executed."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _run_at_torch_import()

        spec.loader.exec_module = exec_module
        return spec


def pinned_threads() -> int:
    """Torch threads of every fit and evaluation: fixed under the pin, the machine's cores otherwise."""
    if pinned():
        return max(1, int(os.environ.get("WSFSS_THREADS", DEFAULT_THREADS)))
    return os.cpu_count() or 1


@contextmanager
def fixed_threads(count: int | None = None):
    """The block runs with `count` torch threads, then the caller's again. By default the pinned
    count, or, unpinned (WSFSS_PIN=0), the caller's own (e.g. a sweep worker's cores / jobs)."""
    count = count or (pinned_threads() if pinned() else None)
    torch = sys.modules.get("torch")  # code that never imports torch stays torch-free
    if torch is None or count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pinning() -> dict:
    """What was pinned, for records: the pins in force, the thread count, and what escaped them."""
    from bench.core.memo import budgets  # here, not at the top: this module loads before torch

    if not pinned():
        info = {"pinned": False, "threads": pinned_threads(), "budgets": budgets()}
        return info | ({"mkl_cbwr": branch} if (branch := mkl_branch()) is not None else {})
    from bench.core.files import cpu_signature

    info: dict = {"pinned": True, "env": dict(ENV_PINS), "threads": pinned_threads(), "cpu": cpu_signature(),
                  "budgets": budgets(), "optimizer": RECIPE}
    if _state.get("overridden"):
        info["overridden"] = _state["overridden"]
    if "numpy" in _state.get("loaded_before", []):
        info["openblas_not_pinned"] = "numpy was imported before bench"
    torch = sys.modules.get("torch")
    if torch is not None:
        capability = torch.backends.cpu.get_cpu_capability()
        info["aten_capability"] = capability
        if capability != ENV_PINS["ATEN_CPU_CAPABILITY"].upper():
            info["cpu_below_pin"] = f"this CPU runs ATen at {capability}, below the pinned AVX-512: numbers may differ"
    if (branch := mkl_branch()) is not None:
        info["mkl_cbwr"] = branch
        if branch != ENV_PINS["MKL_CBWR"]:
            info["mkl_not_pinned"] = f"MKL runs its {branch} branch, not the pinned {ENV_PINS['MKL_CBWR']}: numbers may differ"
    info["onednn_view"] = _state.get("onednn_view", {"not_pinned": "torch was not imported"})
    return info


# oneMKL's named constants for CNR control (mkl_service.h); STRICT is a flag on top
MKL_BRANCHES = {0: "OFF", 1: "BRANCH_OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1",
                8: "SSE4_2", 9: "AVX", 10: "AVX2", 12: "AVX512", 14: "AVX512_E1"}
MKL_CBWR_STRICT = 0x10000


def mkl_branch() -> str | None:
    """The CNR branch MKL runs in this process, as MKL reports it (not as asked: on a non-Intel CPU
    MKL_CBWR=AVX2 runs AUTO); None without torch or where torch carries no MKL. MKL inside torch
    exports its `mkl_cbwr_get` under the service name `mkl_serv_cbwr_get`."""
    import ctypes

    from bench.core.onednn_view import torch_cpu_library

    torch = sys.modules.get("torch")
    if torch is None or not torch.backends.mkl.is_available():
        return None
    try:
        get = ctypes.CDLL(torch_cpu_library()).mkl_serv_cbwr_get
    except (OSError, AttributeError):  # another build of torch: nothing to report, nothing wrong
        return None
    code = get(1)  # MKL_CBWR_BRANCH
    name = MKL_BRANCHES.get(code & ~MKL_CBWR_STRICT, f"code {code & ~MKL_CBWR_STRICT}")
    return name + (",STRICT" if code & MKL_CBWR_STRICT else "")
