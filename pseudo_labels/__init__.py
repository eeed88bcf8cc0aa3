"""Pseudo masks from image-level labels (paper §3.2). Arrives with the pseudo-label issue."""
