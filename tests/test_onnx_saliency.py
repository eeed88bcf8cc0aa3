"""ONNX saliency models plug in with their own conventions: two tiny models computing the same
saliency, exported under two conventions (ImageNet-normalised RGB at any size giving a probability;
DSS's PyTorch port: 256x256 fixed, batch 1, seven logit maps of which 1, 2, 3, 6 are averaged),
give identical maps and gated masks once each is configured; a wrong configuration is caught on
the first batch with one clear error."""
import numpy as np
import pytest
import torch
from torch import nn

from bench.core.errors import BenchError
from pseudo_labels.config import pseudo_config
from pseudo_labels.generate import gated
from pseudo_labels.onnx_saliency import IMAGENET_MEAN, IMAGENET_STD, OnnxSaliency, convention_of

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

torch.manual_seed(0)
CONV = nn.Conv2d(3, 1, 5, padding=2).requires_grad_(False)  # the shared saliency: sigmoid(CONV(rgb in [0, 1]))
MEAN, STD = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) / 255, torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) / 255


class ImagenetProb(nn.Module):
    def forward(self, z):  # ImageNet-normalised RGB -> probability
        return torch.sigmoid(CONV(z * STD + MEAN))


class DssPort(nn.Module):
    def forward(self, z):  # the same input convention, seven logit maps: 1, 2, 3 and 6 are the saliency
        g = CONV(z * STD + MEAN)
        noise = g.abs() + 3.0  # not the saliency: large everywhere (and not constant)
        return noise, g, g, g, -noise, noise * 2, g


def export(model, path, size=None, batch_one=False):
    x = torch.randn(1, 3, size or 64, size or 64)
    dynamic = None if size else {"image": {0: "n", 2: "h", 3: "w"}}
    if size and not batch_one:
        dynamic = {"image": {0: "n"}}
    with torch.no_grad():
        torch.onnx.export(model.eval(), x, str(path), dynamo=False, input_names=["image"], dynamic_axes=dynamic)
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_two_conventions_give_the_same_maps_and_gated_masks(tmp_path):
    a = export(ImagenetProb(), tmp_path / "a.onnx")
    b = export(DssPort(), tmp_path / "b.onnx", size=256, batch_one=True)
    images = np.random.default_rng(0).integers(0, 255, (2, 256, 256, 3), dtype=np.uint8)
    sal_a = OnnxSaliency(a, convention_of(pseudo_config({"saliency": "onnx"}))).maps(images)
    sal_b = OnnxSaliency(b, convention_of(pseudo_config({"saliency": "onnx", "saliency_convention": "dss-pytorch"}))).maps(images)
    np.testing.assert_allclose(sal_a, sal_b, atol=1e-5)
    cfg = pseudo_config({})
    tbar = np.random.default_rng(1).random((2, 256, 256)).astype(np.float32)
    for k in range(2):
        assert np.array_equal(gated(tbar, sal_a[k], cfg), gated(tbar, sal_b[k], cfg))
    with torch.no_grad():
        want = ImagenetProb()((torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD)[:, 0]
    np.testing.assert_allclose(sal_a, want.numpy(), atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_fixed_size_model_gets_resized_images_and_bgr_fields_apply(tmp_path):
    class Bgr(nn.Module):
        def forward(self, y):  # BGR, caffe mean only, 0-255
            rgb = (y.flip(1) + torch.tensor((122.67892, 116.66877, 104.00699)).view(1, 3, 1, 1)) / 255
            return torch.sigmoid(CONV(rgb))

    path = export(Bgr(), tmp_path / "bgr.onnx", size=64, batch_one=True)
    images = np.random.default_rng(2).integers(0, 255, (3, 48, 40, 3), dtype=np.uint8)
    conv = convention_of(pseudo_config({"saliency": "onnx", "saliency_channels": "bgr",
                                        "saliency_mean": "104.00699,116.66877,122.67892", "saliency_std": "1"}))
    got = OnnxSaliency(path, conv).maps(images)  # fixed 64x64, batch 1: run one by one, resized, no raw error
    assert got.shape == (3, 48, 40) and 0 <= got.min() and got.max() <= 1
    again = OnnxSaliency(path, conv).maps(images[:1])
    np.testing.assert_allclose(got[:1], again, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_wrong_convention_is_caught_on_the_first_batch(tmp_path):
    b = export(DssPort(), tmp_path / "b.onnx", size=256, batch_one=True)
    images = np.random.default_rng(0).integers(0, 255, (1, 256, 256, 3), dtype=np.uint8)
    with pytest.raises(BenchError, match=r"gives values in \[.*not probabilities .*saliency_sigmoid=true"):
        OnnxSaliency(b, convention_of(pseudo_config({"saliency": "onnx", "saliency_outputs": "1"}))).maps(images)
    with pytest.raises(BenchError, match="calls every pixel of the first images salient"):
        OnnxSaliency(b, convention_of(pseudo_config({"saliency": "onnx", "saliency_outputs": "0", "saliency_sigmoid": "true"}))).maps(images)

    class Constant(nn.Module):
        def forward(self, z):
            return torch.zeros_like(z[:, :1]) + 0.3

    c = export(Constant(), tmp_path / "c.onnx")
    with pytest.raises(BenchError, match="gives a constant map"):
        OnnxSaliency(c, convention_of(pseudo_config({"saliency": "onnx"}))).maps(images)
    with pytest.raises(BenchError, match="unknown saliency_convention 'dss'"):
        convention_of(pseudo_config({"saliency": "onnx", "saliency_convention": "dss"}))


def test_the_default_convention_keeps_the_fingerprint_it_had(tmp_path):
    from pseudo_labels.onnx_saliency import Convention

    path = export(ImagenetProb(), tmp_path / "a.onnx")
    assert ":" not in OnnxSaliency(path, Convention()).fingerprint().split(":", 2)[2]
    assert OnnxSaliency(path, convention_of(pseudo_config({"saliency_convention": "dss-caffe"}))).fingerprint() != \
        OnnxSaliency(path, Convention()).fingerprint()
