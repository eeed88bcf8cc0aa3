"""Frozen segmentation backbones shared by the methods: mmsegmentation DeepLabV3+, pretrained on
the disjoint pool, and the per-image feature cache."""
