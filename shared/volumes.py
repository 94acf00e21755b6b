"""Read, validate and write NIfTI-1 volumes (.nii, .nii.gz).

A `Volume` keeps the voxel array exactly as stored in the file (the raw on-disk
dtype, before `scl_slope`/`scl_inter` scaling) together with the affine and the
NIfTI header. Anything written back with `write_volume(..., like=volume)` reuses
that affine and header, so masks and decompressed volumes overlay the input voxel
for voxel in any viewer.

Reading is defensive because uploads arrive here: the header is parsed first, the
shape, dtype and voxel count are checked against the limits before any voxel data
is read, and a gzip stream is never decompressed past the size the header
declares, so a gzip bomb costs at most `max_decompressed_bytes`.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import nibabel as nib
import numpy as np
from vesselzip.errors import InvalidVolumeError, VolumeTooLargeError

#: Voxel types a volume may have. uint8/int8 are here for label masks.
SUPPORTED_DTYPES = tuple(
    np.dtype(name) for name in ("uint8", "int8", "int16", "uint16", "int32", "float32", "float64")
)

NIFTI1_HEADER_NBYTES = 348
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
# A gzip member may legitimately end with a little padding after the voxel data;
# more than this is refused rather than decompressed.
_MAX_TRAILING_BYTES = 1 << 20


@dataclass
class Volume:
    """A 3D voxel array with the affine and NIfTI header it came with."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes."""
        zooms = self.header.get_zooms()
        return tuple(float(z) for z in zooms[:3])


def read_volume(
    source: str | Path | bytes,
    *,
    max_voxels: int | None = None,
    max_decompressed_bytes: int | None = None,
) -> Volume:
    """Read a NIfTI-1 volume from a path or from the bytes of a .nii/.nii.gz file.

    Raises InvalidVolumeError for anything that is not a finite 3D volume of a
    supported dtype, and VolumeTooLargeError when a limit is exceeded.
    """
    name = "upload" if isinstance(source, bytes | bytearray | memoryview) else str(source)
    try:
        with _open_stream(source) as raw:
            magic = raw.read(2)
            raw.seek(0)
            if magic == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    file_bytes = _read_nifti_bytes(stream, name, max_voxels, max_decompressed_bytes)
                    _drain_gzip(stream, name)
            else:
                file_bytes = _read_nifti_bytes(raw, name, max_voxels, max_decompressed_bytes)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidVolumeError(f"{name}: corrupt or truncated gzip stream ({exc})") from exc
    except (IsADirectoryError, PermissionError) as exc:
        raise InvalidVolumeError(f"cannot read {name}: {exc.strerror}") from exc

    try:
        image = nib.Nifti1Image.from_bytes(file_bytes)
        data = np.asanyarray(image.dataobj.get_unscaled())
    except Exception as exc:  # nibabel raises many types for malformed files
        raise InvalidVolumeError(f"{name}: not a readable NIfTI-1 file ({exc})") from exc

    # Stored values are kept as they are; the scaling stays in the header so that a
    # volume written back with this header displays the same intensities.
    header = image.header.copy()
    header.set_slope_inter(image.dataobj.slope, image.dataobj.inter)
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    data = data.reshape(data.shape[:3])  # drop the singleton axes checked in the header
    if data.dtype.kind == "f":
        bad = data.size - int(np.count_nonzero(np.isfinite(data)))
        if bad:
            raise InvalidVolumeError(f"{name}: {bad} voxel(s) are NaN or infinite")
    return Volume(data=data, affine=np.asarray(image.affine, dtype=np.float64), header=header)


def write_volume(path: str | Path, data: np.ndarray, like: Volume) -> Path:
    """Write `data` as .nii or .nii.gz on the grid of `like` (same affine and header)."""
    path = Path(path)
    if path.name.endswith(".nii.gz"):
        compress = True
    elif path.suffix == ".nii":
        compress = False
    else:
        raise InvalidVolumeError(f"{path}: output name must end in .nii or .nii.gz")
    payload = volume_to_bytes(data, like, gzip=compress)
    try:
        path.write_bytes(payload)
    except OSError as exc:
        raise InvalidVolumeError(f"cannot write {path}: {exc.strerror}") from exc
    return path


def volume_to_bytes(data: np.ndarray, like: Volume, *, gzip: bool = True) -> bytes:
    """The bytes of a .nii (or .nii.gz) file holding `data` on the grid of `like`.

    The header is `like`'s with the dtype set from `data`. `scl_slope`/`scl_inter`
    are kept when `data` has the volume's dtype (it holds stored values, e.g. a
    decompressed volume) and cleared otherwise (a mask or a derived map).
    bool arrays are written as uint8.
    """
    data = np.asarray(data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if data.shape != like.shape:
        raise InvalidVolumeError(f"array shape {data.shape} does not match the volume {like.shape}")
    if data.dtype not in SUPPORTED_DTYPES:
        raise InvalidVolumeError(f"cannot write dtype {data.dtype}; use one of {_dtype_names()}")
    header = like.header.copy()
    header.set_data_dtype(data.dtype)
    image = nib.Nifti1Image(data, like.affine, header)
    if data.dtype == like.dtype:
        # nibabel clears the scaling of a header given with an array; put it back.
        for field in ("scl_slope", "scl_inter"):
            image.header[field] = like.header[field]
    nii = image.to_bytes()
    # mtime=0 keeps the output reproducible byte for byte.
    return _gzip_bytes(nii) if gzip else nii


def _gzip_bytes(payload: bytes) -> bytes:
    return gzip.compress(payload, compresslevel=6, mtime=0)


def _open_stream(source: str | Path | bytes) -> BinaryIO:
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)
    return open(source, "rb")  # noqa: SIM115 - closed by the caller's with-block


def _read_nifti_bytes(
    stream: BinaryIO, name: str, max_voxels: int | None, max_decompressed_bytes: int | None
) -> bytes:
    """Read the header, check it against the limits, then read exactly the declared data."""
    head = _read_up_to(stream, NIFTI1_HEADER_NBYTES)
    header = _parse_header(head, name)
    shape, dtype = _checked_shape_and_dtype(header, name)
    n_voxels = math.prod(shape)
    if max_voxels is not None and n_voxels > max_voxels:
        raise VolumeTooLargeError(
            f"{name}: {n_voxels} voxels {shape} exceed the limit of {max_voxels}"
        )
    total = int(header.get_data_offset()) + n_voxels * dtype.itemsize
    if max_decompressed_bytes is not None and total > max_decompressed_bytes:
        raise VolumeTooLargeError(
            f"{name}: the decompressed file would be {total} bytes, "
            f"over the limit of {max_decompressed_bytes}"
        )
    rest = _read_up_to(stream, total - len(head))
    if len(head) + len(rest) < total:
        raise InvalidVolumeError(
            f"{name}: truncated file ({len(head) + len(rest)} of {total} bytes)"
        )
    return head + rest


def _parse_header(head: bytes, name: str) -> nib.Nifti1Header:
    if len(head) < NIFTI1_HEADER_NBYTES:
        raise InvalidVolumeError(f"{name}: not a NIfTI file (only {len(head)} bytes)")
    sizeof_hdr = {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")}
    if 540 in sizeof_hdr:
        raise InvalidVolumeError(f"{name}: NIfTI-2 is not supported; save it as NIfTI-1")
    if NIFTI1_HEADER_NBYTES not in sizeof_hdr:
        raise InvalidVolumeError(f"{name}: not a NIfTI file (expected a .nii or .nii.gz)")
    magic = head[344:348]
    if magic == b"ni1\x00":
        raise InvalidVolumeError(f"{name}: a .hdr/.img pair is not supported; use a single .nii")
    if magic != b"n+1\x00":
        raise InvalidVolumeError(f"{name}: not a NIfTI-1 file (bad magic {magic!r})")
    try:
        return nib.Nifti1Header.from_fileobj(io.BytesIO(head), check=False)
    except Exception as exc:
        raise InvalidVolumeError(f"{name}: unreadable NIfTI header ({exc})") from exc


def _checked_shape_and_dtype(
    header: nib.Nifti1Header, name: str
) -> tuple[tuple[int, ...], np.dtype]:
    try:
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
    except Exception as exc:
        raise InvalidVolumeError(f"{name}: unreadable NIfTI header ({exc})") from exc
    if len(shape) < 3:
        raise InvalidVolumeError(f"{name}: expected a 3D volume, got shape {shape}")
    if any(n != 1 for n in shape[3:]):
        raise InvalidVolumeError(
            f"{name}: expected a 3D volume, got {len(shape)}D data of shape {shape}"
        )
    if any(n <= 0 for n in shape):
        raise InvalidVolumeError(f"{name}: the volume is empty (shape {shape})")
    if dtype.newbyteorder("=") not in SUPPORTED_DTYPES:
        raise InvalidVolumeError(
            f"{name}: voxel type {dtype} is not supported; use one of {_dtype_names()}"
        )
    return shape, dtype


def _read_up_to(stream: BinaryIO, nbytes: int) -> bytes:
    """Read `nbytes` (fewer only at end of stream) in chunks, never more."""
    parts = []
    remaining = nbytes
    while remaining > 0:
        part = stream.read(min(remaining, _CHUNK))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _drain_gzip(stream: BinaryIO, name: str) -> None:
    """Read to the end of the gzip stream so its CRC is checked, refusing bulky trailers."""
    trailing = 0
    while part := stream.read(_CHUNK):
        trailing += len(part)
        if trailing > _MAX_TRAILING_BYTES:
            raise InvalidVolumeError(f"{name}: the gzip stream holds far more data than declared")


def _dtype_names() -> str:
    return ", ".join(dtype.name for dtype in SUPPORTED_DTYPES)
