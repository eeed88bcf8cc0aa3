"""Run by tests/test_pinning.py in a fresh interpreter: trains each pool net briefly through the
cached builders (the real path, thread pin included) into a new cache folder, then each method a few
steps on fold 0 of the mini set at its embedded defaults otherwise (widths, batch, learning rate: the
kernels a real fit runs), under the pinned thread count as the runner fits, and prints one sha256 per
net's weights as JSON. argv: dataset cache folder, output cache folder, and "methods" to fit the
methods too (else the pool nets alone), or "audit" to fit all of them and print also, under
"vml_approximate", the torch ops they ran whose MKL kernels depend on the CPU's vendor (VmlAudit),
with where they ran them.
$WSFSS_PROBE_ONEDNN_CACHES (per-core bytes, L1 first) makes oneDNN read other caches from the CPU,
as on a machine of another generation; $WSFSS_PROBE_MKL_NOT_INTEL=1 makes MKL take this CPU for a
non-Intel one (an AMD Zen), as MKL decides which code it runs; $WSFSS_PROBE_MKL_INTEL_AVX2=1 makes
it take the CPU for an Intel one and run its AVX2 branch, as the Intel Xeon of the old pin did."""
import hashlib
import json
import os
import sys
from pathlib import Path

import bench  # noqa: F401 - first, as the CLI does: the pins are set before torch or numpy load

# MKL caches its answers to "an Intel CPU?" and "a Zen?" in two flags it fills on first use; written
# before torch loads (the library opened first, torch then reuses it), MKL dispatches as on an AMD
# CPU, or as on an Intel one
MKL_NOT_INTEL_FLAGS = {"mkl_serv_intel_cpu_true.cached": 0, "mkl_serv_cpuiszen.itisZen": 1}
MKL_INTEL_FLAGS = {"mkl_serv_intel_cpu_true.cached": 1, "mkl_serv_cpuiszen.itisZen": 0}


def write_mkl_vendor_flags(flags: dict) -> None:
    import ctypes

    from bench.core.onednn_view import _load_address, symbol_offset

    # found on sys.path by hand: importlib's find_spec would run the pin's import hook for torch
    lib = next(os.path.realpath(f) for d in sys.path if (f := Path(d or ".") / "torch" / "lib" / "libtorch_cpu.so").is_file())
    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    for name, value in flags.items():
        offset = symbol_offset(lib, name.encode())
        assert offset is not None, f"{lib} has no {name}: another MKL inside torch"
        flag = ctypes.c_int32.from_address(_load_address(lib) + offset)
        assert flag.value in (-1, value), f"MKL has already read the CPU ({name} = {flag.value})"
        flag.value = value


if os.environ.get("WSFSS_PROBE_MKL_NOT_INTEL"):
    assert "torch" not in sys.modules
    write_mkl_vendor_flags(MKL_NOT_INTEL_FLAGS)

if os.environ.get("WSFSS_PROBE_MKL_INTEL_AVX2"):  # MKL's code as an Intel Xeon ran it under the old pin
    assert "torch" not in sys.modules
    write_mkl_vendor_flags(MKL_INTEL_FLAGS)
    os.environ["MKL_CBWR"] = "AVX2"  # over the pin, before MKL reads it

if os.environ.get("WSFSS_PROBE_ONEDNN_CACHES"):  # this "machine's" CPU has these caches, as oneDNN reads them
    from bench.core import onednn_view
    from bench.core.pinning import at_torch_import

    sizes = [int(v) for v in os.environ["WSFSS_PROBE_ONEDNN_CACHES"].split(",")]
    at_torch_import(lambda: onednn_view.write(sizes), first=True)  # before the pin, as the CPU itself would be


# a few steps each; the backbones under them as brief as the pool nets above (their own files)
METHOD_FITS = {
    "ours": {"episodes": 4, "backbone_crop_epochs": 1, "backbone_steps": 3, "backbone_max_images": 16},
    "panet": {"iterations": 4, "trunk_epochs": 1},
    "amp": {"steps": 4, "trunk_epochs": 1},
    "pfenet": {"steps": 4, "backbone_crop_epochs": 1, "backbone_steps": 3, "backbone_max_images": 16},
}


def weights_sha(path: Path) -> str:
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=False)
    return state_sha(blob["state_dict"] if isinstance(blob, dict) and "state_dict" in blob else blob)


def state_sha(state: dict) -> str:
    """Of every tensor in a (nested) state, by key: configs, names and loss logs left out."""
    import torch

    h = hashlib.sha256()

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k in sorted(value):
                walk(f"{prefix}.{k}" if prefix else k, value[k])  # a flat state hashes as weights_sha always did
        elif isinstance(value, torch.Tensor):
            h.update(prefix.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())

    walk("", state)
    return h.hexdigest()[:16]


def method_fits(mini, out: Path) -> dict:
    from bench.core import curves
    from bench.core.pinning import fixed_threads
    from bench.harness.annotations import annotation_source
    from bench.harness.presets import get_preset
    from bench.harness.registry import create_method
    from bench.harness.views import FitView

    curves.VALIDATION_EPISODES = 5  # validation runs as in a real fit (it must not move the weights), on fewer episodes
    train = FitView(mini, annotation_source("full", mini, out), get_preset("wacv22"), 0, out)
    shas = {}
    for name, config in METHOD_FITS.items():
        method = create_method(name, config)
        with fixed_threads():  # as the runner fits
            method.fit(train, {})
        shas[name] = state_sha(method.state_dict())
    return shas


class VmlAudit:
    """Records, per torch op whose MKL kernel carries an approximation (bench/core/optim.py,
    VML_APPROXIMATE), the project files and lines that ran it on a CPU float tensor: the ops whose
    results depend on the CPU's vendor."""

    def __init__(self):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        from bench.core.optim import VML_APPROXIMATE

        audit, root = self, str(Path(__file__).resolve().parent.parent)
        names = {f"aten.{op}" for op in VML_APPROXIMATE} | {f"aten.{op}_" for op in VML_APPROXIMATE} | {"aten._foreach_sqrt", "aten._foreach_sqrt_"}
        self.calls: dict[str, set] = {}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = str(func.overloadpacket)
                if name in names and any(isinstance(a, torch.Tensor) and a.is_floating_point() and a.device.type == "cpu"
                                         for a in tree_leaves(args)):
                    import traceback

                    frames = [f for f in traceback.extract_stack()[:-1] if f.filename.startswith(root) or "/torch/optim/" in f.filename]
                    audit.calls.setdefault(name, set()).add(" < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames[-3:][::-1]))
                return func(*args, **(kwargs or {}))

        self.mode = Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)

    def found(self) -> dict:
        return {k: sorted(v) for k, v in sorted(self.calls.items())}


def main(data_cache: str, out_cache: str, what: str = "pool") -> None:
    if what == "audit":  # every fit below, pool nets and methods, watched for the ops above
        with VmlAudit() as audit:
            shas = fitted_shas(data_cache, out_cache, methods=True)
        print(json.dumps({**shas, "vml_approximate": audit.found()}))
        return
    print(json.dumps(fitted_shas(data_cache, out_cache, methods=what == "methods")))


def fitted_shas(data_cache: str, out_cache: str, methods: bool) -> dict:
    from backbones.pretrain import backbone_config, pretrained_backbone
    from backbones.trunks import TrunkConfig, pretrained_vgg16
    from bench.data.datasets import embedded_dataset, find_pool, mini_spec
    from pseudo_labels.config import pseudo_config
    from pseudo_labels.train import pool_cam, pool_saliency

    mini = embedded_dataset(Path(data_cache), mini_spec(), "openmoji5i-mini")
    pool, out = find_pool(mini), Path(out_cache)
    quiet = lambda *a: None  # noqa: E731
    cfg = pseudo_config({"cam_crop_epochs": 1, "cam_epochs": 1, "saliency_epochs": 1})
    paths = {"cam": pool_cam(mini, cfg, out, quiet)[2], "saliency": pool_saliency(mini, cfg, out, quiet)[2],
             "deeplab": pretrained_backbone(pool, backbone_config({"crop_epochs": 1, "steps": 3, "max_images": 16}), out, quiet)[2]}
    pretrained_vgg16(pool, TrunkConfig(epochs=1), out, quiet)
    paths["vgg16"] = next((out / "trunks").glob("*.pt"))
    shas = {k: weights_sha(p) for k, p in paths.items()}
    return {**shas, **(method_fits(mini, out) if methods else {})}


if __name__ == "__main__":
    main(*sys.argv[1:4])
