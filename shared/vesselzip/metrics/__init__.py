"""Compression (size, fidelity, speed), segmentation (overlap, surface distance) and
connectivity (pieces, specks) metrics. Exact definitions: docs/metrics.md, and the
connectivity module's own docstrings."""

from vesselzip.metrics.compression import compression_metrics, psnr, ssim3d
from vesselzip.metrics.connectivity import connectivity_metrics
from vesselzip.metrics.segmentation import segmentation_metrics

__all__ = ["compression_metrics", "connectivity_metrics", "psnr", "segmentation_metrics", "ssim3d"]
