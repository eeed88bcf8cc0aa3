"""What a CPU fit's numbers depend on besides code, data and seed, pinned so that two machines of
one kind (2 cores, AVX-512; Intel or AMD) train the same weights.

Measured on the 2-core AMD EPYC (AVX-512, no AMX) this project runs on, three steps of a
DeepLabV3+ r18 fit (hash of the weights):
- the torch thread count changes the weights (1 vs 2 threads): float sums are split per thread;
- oneDNN's instruction set changes them (ONEDNN_MAX_CPU_ISA=AVX2 vs this CPU's AVX512_CORE_BF16;
  AVX512_CORE gives this CPU's default weights), and oneDNN picks it by CPU (an Intel CPU with AMX
  reports AVX512_CORE_AMX);
- MKL's code path: MKL_CBWR=AVX2 asks for MKL's AVX2 branch of conditional numerical
  reproducibility (CNR), which MKL documents for Intel CPUs; on this AMD CPU it runs AUTO (read back
  from MKL: `mkl_branch`), its own ISA-based path for the CPU but with fixed cache sizes and static
  scheduling, so MKL's blocking does not follow the machine's caches either way. The only branch
  MKL promises on every x86 CPU, COMPATIBLE, changes this machine's weights and is 2x slower on
  matrix products. Records keep the branch MKL ran (`mkl_cbwr`);
- ATen's own kernels (ATEN_CPU_CAPABILITY avx2 vs avx512) gave the same weights here; pinned to
  avx512 anyway, the capability of the kind;
- numpy's OpenBLAS picks a kernel by CPU (Zen vs SkylakeX); OPENBLAS_CORETYPE=Haswell fixes it
  (read when numpy loads: only effective if `bench` is imported before numpy).
The pins are this machine's own defaults, so weights trained here before the pins existed are
unchanged by them. What they cannot pin: a CPU without AVX-512 (oneDNN and ATen fall back to
AVX2 and the weights differ: `pinning()` says so), and oneDNN's blocking by cache size (records
keep the CPU's family / model / stepping and cache sizes, `files.cpu_signature`, so two machines
whose fits differ can be told apart).
WSFSS_PIN=0 turns all of it off (each library's fastest path, the machine's core count);
WSFSS_THREADS sets the pinned thread count (default 2, the count the README's numbers used).
Every record keeps `pinning()`, and tests/test_pinning.py compares brief pool-net and method fits
with the hashes committed in tests/data/golden_pool_fits.json, with the CPUs they were made on."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

ENV_PINS = {
    "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
    "ATEN_CPU_CAPABILITY": "avx512",
    "MKL_CBWR": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}
DEFAULT_THREADS = 2
_state: dict = {}


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
                  "budgets": budgets()}
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

    torch = sys.modules.get("torch")
    if torch is None or not torch.backends.mkl.is_available():
        return None
    try:
        get = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")).mkl_serv_cbwr_get
    except (OSError, AttributeError):  # another build of torch: nothing to report, nothing wrong
        return None
    code = get(1)  # MKL_CBWR_BRANCH
    name = MKL_BRANCHES.get(code & ~MKL_CBWR_STRICT, f"code {code & ~MKL_CBWR_STRICT}")
    return name + (",STRICT" if code & MKL_CBWR_STRICT else "")
