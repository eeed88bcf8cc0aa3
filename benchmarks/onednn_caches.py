"""Imitates another CPU's caches as oneDNN sees them, in this process only: a diagnostic for
benchmarks/pfenet_fingerprint.py (--onednn-caches), never for a fit whose numbers are kept.

oneDNN sizes some blocks of its convolutions by the per-core cache sizes it reads from the CPU
(e.g. the reduction block of a 1x1 convolution's weight gradient is at most L1 / unroll floats:
src/cpu/x64/jit_avx512_common_1x1_conv_kernel.cpp), and a block's size can change the order of
a sum, so two machines with other caches could train other weights although every library is
pinned to one code path. oneDNN has no setting for the sizes: it reads them once into Xbyak's CPU
object, which torch links statically and keeps as a local symbol of libtorch_cpu.so. Its address
comes from `nm` and the library's load address from /proc/self/maps; the sizes (and the number of
cores sharing each level) are then rewritten in place. The layout is Xbyak's `Cpu` as oneDNN 3.x
builds it (a 16-byte type, 2 topology counts, then 10 cache sizes, 10 sharing counts, the level
count); it is checked against this CPU's own L1d (sysfs) before anything is written, so another
build refuses instead of writing elsewhere. oneDNN keeps the primitives it built, so the sizes are
changed before the first convolution of the shapes to be imitated."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

SYMBOL = "_ZZN4dnnl4impl3cpu3x643cpuEvE4cpu_"  # dnnl::impl::cpu::x64::cpu()::cpu_
SIZES, SHARING, LEVELS = 24, 64, 104  # byte offsets in Xbyak's Cpu
MAX_LEVELS = 10


def _library() -> str:
    import torch

    return os.path.realpath(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))


def _address() -> int:
    lib = _library()
    if shutil.which("nm") is None:
        raise SystemExit("onednn_caches: `nm` not found; fix: install binutils (apt-get install binutils)")
    symbols = subprocess.run(["nm", lib], capture_output=True, text=True, check=True).stdout
    offset = next((int(line.split()[0], 16) for line in symbols.splitlines() if line.endswith(" " + SYMBOL)), None)
    if offset is None:
        raise SystemExit(f"onednn_caches: {lib} has no symbol {SYMBOL} (another torch build); fix: imitate on torch 2.14.1 from PyPI")
    with open("/proc/self/maps") as maps:
        base = next(int(f[0].split("-")[0], 16) for f in map(str.split, maps) if len(f) >= 6 and f[5] == lib and int(f[2], 16) == 0)
    return base + offset


def _cpu_object():
    """(sizes, sharing counts, level count) of oneDNN's CPU object, initialised first."""
    import torch

    torch.nn.functional.conv2d(torch.zeros(1, 3, 5, 7), torch.zeros(5, 3, 1, 1))  # oneDNN reads the CPU on first use
    at = _address()
    levels = ctypes.c_uint32.from_address(at + LEVELS).value
    if not 1 <= levels <= MAX_LEVELS:
        raise SystemExit(f"onednn_caches: oneDNN's CPU object has {levels} cache levels here (another layout); nothing written")
    return (ctypes.c_uint32 * MAX_LEVELS).from_address(at + SIZES), (ctypes.c_uint32 * MAX_LEVELS).from_address(at + SHARING), levels


def per_core_caches() -> list[int]:
    """The per-core data cache sizes (bytes, L1 first) oneDNN uses in this process."""
    sizes, sharing, levels = _cpu_object()
    return [sizes[i] // max(1, sharing[i]) for i in range(levels)]


def _sysfs_l1d() -> int | None:
    from bench.core.files import cpu_signature

    text = cpu_signature().get("caches", {}).get("L1d", "")
    return int(text[:-1]) * 1024 if text.endswith("K") else None


def imitate(per_core: list[int]) -> list[int]:
    """Makes oneDNN see these per-core data cache sizes (bytes, L1 first; 0 keeps a level) from
    now on in this process; returns the sizes it saw before."""
    sizes, sharing, levels = _cpu_object()
    if len(per_core) > levels:
        raise SystemExit(f"onednn_caches: {len(per_core)} sizes given, oneDNN knows {levels} levels here")
    l1d = _sysfs_l1d()
    if l1d is not None and sizes[0] != l1d:  # the layout is not the one assumed: write nothing
        raise SystemExit(f"onednn_caches: read L1d {sizes[0]} B where sysfs says {l1d} B (another layout); nothing written")
    before = [sizes[i] // max(1, sharing[i]) for i in range(levels)]
    for i, size in enumerate(per_core):
        if size:
            sizes[i], sharing[i] = size, 1
    return before
