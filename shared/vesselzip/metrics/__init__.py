"""Compression (size, fidelity, speed) and segmentation (overlap, surface distance)
metrics. Exact definitions: docs/metrics.md."""

from vesselzip.metrics.compression import compression_metrics, psnr, ssim3d
from vesselzip.metrics.segmentation import segmentation_metrics

__all__ = ["compression_metrics", "psnr", "segmentation_metrics", "ssim3d"]
