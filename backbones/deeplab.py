"""DeepLabV3+ from mmsegmentation, built from a plain dict (no config files, no runner).

Presets: `r18-os16` (embedded default: ResNetV1c-18, output stride 16, light enough to pretrain
on the pool in minutes on 2 CPU cores) and `r50-os8` / `r101-os8` (the paper's real-data
backbones, same head widths as mmsegmentation's published DeepLabV3+ configs).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from backbones.mmseg_compat import install
from bench.core.errors import BenchError

ARCHS = {
    # depth, head in/out channels, c1 channels, strides, dilations (output stride 16 or 8)
    "r18-os16": dict(depth=18, in_channels=512, channels=128, c1_in=64, c1=48, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)),
    "r50-os8": dict(depth=50, in_channels=2048, channels=512, c1_in=256, c1=48, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
    "r101-os8": dict(depth=101, in_channels=2048, channels=512, c1_in=256, c1=48, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
}


def model_config(arch: str, num_classes: int) -> dict:
    if arch not in ARCHS:
        raise BenchError(f"unknown backbone '{arch}'; known: {', '.join(ARCHS)}")
    a = ARCHS[arch]
    norm = dict(type="BN", requires_grad=True)
    return dict(
        type="EncoderDecoder",
        backbone=dict(type="ResNetV1c", depth=a["depth"], num_stages=4, out_indices=(0, 1, 2, 3),
                      dilations=a["dilations"], strides=a["strides"], norm_cfg=norm, norm_eval=False,
                      style="pytorch", contract_dilation=True),
        decode_head=dict(type="DepthwiseSeparableASPPHead", in_channels=a["in_channels"], in_index=3,
                         channels=a["channels"], dilations=(1, 6, 12, 18), c1_in_channels=a["c1_in"],
                         c1_channels=a["c1"], dropout_ratio=0.1, num_classes=num_classes, norm_cfg=norm,
                         align_corners=False,
                         loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
        train_cfg=dict(), test_cfg=dict(mode="whole"),
    )


def build_deeplab(arch: str, num_classes: int) -> nn.Module:
    install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mmcv-lite warns about ops DeepLabV3+ never uses
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules

        register_all_modules(init_default_scope=False)
        return MODELS.build(model_config(arch, num_classes))


def decoder_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The decoder's last feature map (output of `sep_bottleneck`, stride 4, `channels` wide):
    the layer right before the 1x1 classifier, where low-level (c1) and ASPP context are fused."""
    head = model.decode_head
    feats = model.backbone(x)
    inputs = head._transform_inputs(feats)
    aspp = [head.image_pool(inputs)] + head.aspp_modules(inputs)
    from mmseg.models.utils import resize

    aspp[0] = resize(aspp[0], size=inputs.shape[2:], mode="bilinear", align_corners=head.align_corners)
    out = head.bottleneck(torch.cat(aspp, dim=1))
    c1 = head.c1_bottleneck(feats[0])
    out = resize(out, size=c1.shape[2:], mode="bilinear", align_corners=head.align_corners)
    return head.sep_bottleneck(torch.cat([out, c1], dim=1))


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.decode_head.cls_seg(decoder_features(model, x))
