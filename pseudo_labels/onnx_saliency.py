"""A user's ONNX saliency model, run by the conventions it was trained and exported with.

Saliency models differ in what they expect and return, and a wrong guess gives wrong maps without
an error. A convention fixes: channel order (rgb|bgr), the mean subtracted from 0-255 values and
the std divided after, the input size (fixed, or each image's own), which outputs are averaged,
whether a sigmoid is applied to them, and whether each map is min-max normalised per image.
Named conventions (`--pseudo-set saliency_convention=NAME`), any field overridable
(`saliency_channels=bgr saliency_mean=104,117,123 saliency_std=1 saliency_size=256
saliency_outputs=1,2,3,6 saliency_sigmoid=true saliency_minmax=true`):
- imagenet-rgb (default): RGB, ImageNet mean/std, own size, output 0 taken as a probability;
- sigmoid-map: the same with a sigmoid on output 0 (a model that returns logits);
- dss-pytorch: DSS's PyTorch port: RGB, ImageNet mean/std, 256x256, seven logit maps of which
  1, 2, 3 and 6 are averaged after a sigmoid;
- dss-caffe: DSS as released (Caffe): BGR, mean subtraction only (104.008, 116.669, 122.675), own
  size, every exported output averaged (export the side outputs and the fuse the release averages),
  per-image min-max.
A model exported with a fixed input size or batch 1 is fed resized images one at a time. The first
batch is checked (values in [0, 1], not constant, not all foreground) with one clear error."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.errors import BenchError
from bench.core.files import file_sha

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Convention:
    channels: str = "rgb"
    mean: tuple[float, float, float] = IMAGENET_MEAN  # in the model's channel order, on 0-255 values
    std: tuple[float, float, float] = IMAGENET_STD
    size: int = 0  # fixed square input side; 0 = each image's own size
    outputs: tuple[int, ...] = (0,)  # averaged; () = every output
    sigmoid: bool = False
    minmax: bool = False


CONVENTIONS = {
    "imagenet-rgb": Convention(),
    "sigmoid-map": Convention(sigmoid=True),
    "dss-pytorch": Convention(size=256, outputs=(1, 2, 3, 6), sigmoid=True),
    "dss-caffe": Convention(channels="bgr", mean=(104.00699, 116.66877, 122.67892), std=(1.0, 1.0, 1.0), outputs=(),
                            minmax=True),
}


def convention_of(cfg) -> Convention:
    """The named convention of the pseudo-label config with its explicit field overrides."""
    if cfg.saliency_convention not in CONVENTIONS:
        raise BenchError(f"unknown saliency_convention '{cfg.saliency_convention}'; use {', '.join(CONVENTIONS)}")
    conv, over = CONVENTIONS[cfg.saliency_convention], {}
    if cfg.saliency_channels:
        over["channels"] = _choice(cfg.saliency_channels, ("rgb", "bgr"), "saliency_channels")
    for key in ("mean", "std"):
        value = getattr(cfg, f"saliency_{key}")
        if value != "":
            nums = [float(v) for v in str(value).split(",")]
            over[key] = tuple(nums * 3 if len(nums) == 1 else nums)
    if cfg.saliency_size != "":
        over["size"] = 0 if str(cfg.saliency_size) in ("native", "0") else int(cfg.saliency_size)
    if cfg.saliency_outputs != "":
        over["outputs"] = () if str(cfg.saliency_outputs) == "all" else tuple(int(v) for v in str(cfg.saliency_outputs).split(","))
    for key in ("sigmoid", "minmax"):
        value = getattr(cfg, f"saliency_{key}")
        if value != "":
            over[key] = str(value).lower() in ("1", "true", "yes")
    return replace(conv, **over)


def _choice(value, choices, name):
    if value not in choices:
        raise BenchError(f"{name}={value} is not one of {', '.join(choices)}")
    return value


class OnnxSaliency:
    def __init__(self, path: Path, convention: Convention = Convention()):
        self.path, self.convention = Path(path), convention
        if not self.path.is_file():
            raise BenchError(f"ONNX saliency model {self.path} not found; fix: pass an existing file with --pseudo-set saliency_path=FILE")
        try:
            import onnxruntime
        except ImportError:
            raise BenchError("the onnx saliency back-end needs onnxruntime; fix: pip install onnxruntime") from None
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in onnxruntime.get_available_providers()]
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise BenchError(f"ONNX saliency model {self.path} could not be loaded ({exc}); fix: export a model with one image input") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        dims = list(first.shape)
        self.batch_one = dims[0] == 1
        fixed = [d for d in dims[2:] if isinstance(d, int)]
        self.size = convention.size or (fixed[0] if len(fixed) == 2 and fixed[0] == fixed[1] else 0)
        self.checked = False

    def maps(self, images: np.ndarray) -> np.ndarray:
        x = self._inputs(images)
        groups = [x[i:i + 1] for i in range(len(x))] if self.batch_one else [x]
        maps = torch.cat([self._outputs(g) for g in groups])
        maps = F.interpolate(maps[:, None], size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
        if self.convention.minmax:
            lo = maps.amin(dim=(1, 2), keepdim=True)
            hi = maps.amax(dim=(1, 2), keepdim=True)
            maps = (maps - lo) / (hi - lo).clamp_min(1e-8)
        if not self.checked:
            self._check(maps)
            self.checked = True
        return maps.clamp(0, 1).numpy()

    def _inputs(self, images: np.ndarray) -> np.ndarray:
        c = self.convention
        x = torch.from_numpy(np.ascontiguousarray(images)).float()
        if c.channels == "bgr":
            x = x.flip(-1)
        x = (x - torch.tensor(c.mean)) / torch.tensor(c.std)
        x = x.permute(0, 3, 1, 2)
        if self.size and tuple(x.shape[2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x.contiguous().numpy()

    def _outputs(self, x: np.ndarray) -> torch.Tensor:
        try:
            outs = self.session.run(None, {self.input_name: x})
        except Exception as exc:  # a shape the export does not take: say which convention to set
            raise BenchError(f"ONNX saliency model {self.path} refused a {tuple(x.shape)} input ({str(exc).splitlines()[0][:160]}); "
                             f"fix: set saliency_size to its input side (or a saliency_convention)") from None
        chosen = self.convention.outputs or tuple(range(len(outs)))
        if max(chosen) >= len(outs):
            raise BenchError(f"ONNX saliency model {self.path} has {len(outs)} output(s), the convention averages "
                             f"{chosen}; fix: saliency_outputs=...")
        maps = []
        for i in chosen:
            out = torch.from_numpy(np.asarray(outs[i], np.float32))
            out = out[:, 0] if out.ndim == 4 else out
            maps.append(torch.sigmoid(out) if self.convention.sigmoid else out)
        return torch.stack(maps).mean(0)

    def _check(self, maps: torch.Tensor) -> None:
        lo, hi = float(maps.min()), float(maps.max())
        fix = f"fix: check --pseudo-set saliency_convention (one of {', '.join(CONVENTIONS)}) and its fields"
        if lo < -1e-4 or hi > 1 + 1e-4:
            raise BenchError(f"ONNX saliency model {self.path} gives values in [{lo:.3g}, {hi:.3g}] on the first images, "
                             f"not probabilities (logits need saliency_sigmoid=true); {fix}")
        if hi - lo < 1e-6:
            raise BenchError(f"ONNX saliency model {self.path} gives a constant map ({lo:.3g}) on the first images "
                             f"(wrong input scaling or channel order?); {fix}")
        if float((maps >= 0.5).float().mean()) > 0.99:
            raise BenchError(f"ONNX saliency model {self.path} calls every pixel of the first images salient; {fix}")

    def fingerprint(self) -> str:
        base = f"onnx:{self.path.name}:{file_sha(self.path)}"
        # the default convention keeps the key it always had, so earlier pseudo masks stay valid
        return base if self.convention == Convention() else f"{base}:{sorted(asdict(self.convention).items())}"
