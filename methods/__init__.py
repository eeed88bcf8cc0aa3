"""Few-shot segmentation methods: one file each, registered in bench/harness/registry.py."""
