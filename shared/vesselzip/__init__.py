"""vesselzip: compress 3D angiography with ZFP and measure what it does to vessel segmentation.

The domain package. It is imported by the API gateway (`vesselzip_api`) and the
workers (`vesselzip_worker`) and imports neither FastAPI nor RQ itself.
"""

__version__ = "0.1.0"
