"""lightning-segqa: find the wrong masks in a segmentation dataset while you train."""

__version__ = "0.1.0"
