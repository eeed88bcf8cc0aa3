"""Few-shot segmentation methods: one file each, registered in bench/registry.py."""
