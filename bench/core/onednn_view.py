"""oneDNN's view of the CPU (per-core cache sizes, cores), read and written in this process.

oneDNN sizes the blocks of some kernels by the per-core cache sizes it reads from the CPU once (and
splits a few thread teams by its core count), and a block's size can change the order of a sum:
seeing a Zen 4's 32 KB L1d instead of this machine's 48 KB, PFENet's trunk computes other float16
features for every image of a 32-image batch, so two machines of one kind built other feature
stores and trained other PFENets (README, "Every fit: pinned CPU code paths"). oneDNN has no
setting for these values; torch links it statically and keeps Xbyak's CPU object, which holds
them, as a local symbol of libtorch_cpu.so. This finds the object (the library's ELF symbol table; its load address in
/proc/self/maps), checks that it holds what Xbyak's `Cpu` holds as oneDNN 3.x builds it (its level
count, and its L1d against sysfs), and writes values into it. The pin (bench/core/pinning.py)
writes the kind's; benchmarks/pfenet_fingerprint.py --onednn-caches imitates other CPUs over it,
and tests/pinning_probe.py sets another CPU's view up before the pin. Only a kernel's speed depends
on the true caches. oneDNN keeps the kernels it built, so values are written before the first
convolution of the shapes they are for: the pin runs when torch is imported."""
from __future__ import annotations

import ctypes
import mmap
import os
import struct

SYMBOL = b"_ZZN4dnnl4impl3cpu3x643cpuEvE4cpu_"  # dnnl::impl::cpu::x64::cpu()::cpu_
CORES, SIZES, SHARING, LEVELS = 16, 24, 64, 104  # byte offsets of Xbyak's Cpu fields
MAX_LEVELS = 10


class ViewUnavailable(Exception):
    """This process's oneDNN cannot be read or written (another torch build or platform)."""


def torch_cpu_library() -> str:
    """The path of torch's CPU library (oneDNN and MKL are linked into it), links resolved as
    /proc/self/maps names it."""
    import torch

    return os.path.realpath(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))


def size_bytes(text: str) -> int:
    """'48K' -> 49152, '1M' -> 1048576, '32768' -> 32768 (sysfs' cache sizes, and sizes typed on a
    command line); ValueError otherwise."""
    units = {"K": 2**10, "M": 2**20}
    unit = units.get(text[-1:].upper(), 1)
    return int(text[:-1] if unit > 1 else text) * unit


def symbol_offset(path: str, name: bytes) -> int | None:
    """Address of a (local) symbol in an ELF64 library's .symtab, relative to its load address."""
    import numpy as np

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:5] != b"\x7fELF\x02":
            return None
        shoff, = struct.unpack_from("<Q", m, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", m, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize) for i in range(shnum)]
        symtab = next((s for s in sections if s[1] == 2), None)  # SHT_SYMTAB (a stripped library has none)
        if symtab is None:
            return None
        strtab = sections[symtab[6]]
        at = m.find(b"\0" + name + b"\0", strtab[4], strtab[4] + strtab[5])
        if at < 0:
            return None
        entry = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"), ("size", "<u8")])
        table = np.frombuffer(m, dtype=entry, count=symtab[5] // entry.itemsize, offset=symtab[4])
        hits = np.nonzero(table["name"] == at + 1 - strtab[4])[0]
        value = int(table["value"][hits[0]]) if len(hits) else None
        del table  # the mmap cannot close while a view of it lives
        return value


def _load_address(path: str) -> int:
    with open("/proc/self/maps") as maps:
        for fields in map(str.split, maps):
            if len(fields) >= 6 and fields[5] == path and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    raise ViewUnavailable(f"{path} is not mapped in this process")


_checked: list[int] = []  # the object's address, once checked (before anything was written)


def _cpu_object() -> int:
    """Address of oneDNN's CPU object, after oneDNN has read the CPU into it; checked the first time."""
    import torch

    if _checked:
        return _checked[0]
    lib = torch_cpu_library()
    if not os.path.isfile(lib):
        raise ViewUnavailable(f"no {lib} (a torch without it)")
    offset = symbol_offset(lib, SYMBOL)
    if offset is None:
        raise ViewUnavailable(f"{lib} has no symbol {SYMBOL.decode()} (another torch build)")
    torch.nn.functional.conv2d(torch.zeros(1, 3, 5, 7), torch.zeros(5, 3, 1, 1))  # oneDNN reads the CPU on first use
    at = _load_address(lib) + offset
    levels = ctypes.c_uint32.from_address(at + LEVELS).value
    if not 1 <= levels <= MAX_LEVELS:
        raise ViewUnavailable(f"oneDNN's CPU object reads {levels} cache levels (another layout)")
    l1d = _sysfs_l1d()
    if l1d is not None and ctypes.c_uint32.from_address(at + SIZES).value != l1d:
        raise ViewUnavailable(f"oneDNN's CPU object reads an L1d of {ctypes.c_uint32.from_address(at + SIZES).value} B, "
                              f"sysfs {l1d} B (another layout)")
    _checked.append(at)
    return at


def _sysfs_l1d() -> int | None:
    from bench.core.files import cpu_signature

    try:
        return size_bytes(cpu_signature().get("caches", {}).get("L1d", ""))
    except ValueError:  # no sysfs here
        return None


def _fields(at: int):
    return ((ctypes.c_uint32 * MAX_LEVELS).from_address(at + SIZES), (ctypes.c_uint32 * MAX_LEVELS).from_address(at + SHARING),
            ctypes.c_uint32.from_address(at + LEVELS).value, (ctypes.c_uint32 * 2).from_address(at + CORES))


def view() -> dict:
    """{"caches": per-core data cache sizes in bytes, L1 first; "cores": [threads per core, cores]}
    as oneDNN uses them in this process."""
    sizes, sharing, levels, cores = _fields(_cpu_object())
    return {"caches": [sizes[i] // max(1, sharing[i]) for i in range(levels)], "cores": list(cores)}


def write(caches: list[int], cores: list[int] | None = None) -> dict:
    """Makes oneDNN use these per-core data cache sizes (bytes, L1 first; 0 keeps a level) and,
    given, [threads per core, cores] from now on in this process; returns the view before."""
    at = _cpu_object()
    before = view()
    sizes, sharing, levels, core_counts = _fields(at)
    if len(caches) > levels:
        raise ViewUnavailable(f"{len(caches)} cache sizes given, oneDNN knows {levels} levels here")
    for i, size in enumerate(caches):
        if size:
            sizes[i], sharing[i] = size, 1
    if cores:
        core_counts[0], core_counts[1] = cores
    return before
