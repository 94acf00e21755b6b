"""Read, validate and write NIfTI-1 volumes (.nii, .nii.gz).

A `Volume` keeps the voxel array exactly as stored in the file (the raw on-disk
dtype, before `scl_slope`/`scl_inter` scaling) together with the affine and the
NIfTI header. Anything written back with `write_volume(..., like=volume)` reuses
that affine and header, so masks and decompressed volumes overlay the input voxel
for voxel in any viewer.

Reading is defensive because uploads arrive here: the header is parsed first, the
shape, dtype and voxel count are checked against the limits before any voxel data
is read, and a gzip stream is never decompressed past the size the header
declares, so a gzip bomb costs at most `max_volume_bytes` (plus the header's
extensions, at most MAX_EXTENSION_BYTES).
"""

from __future__ import annotations

import gzip
import io
import math
import warnings
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

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
#: Bytes a file may hold after the voxels its header declares, in a .nii as in the
#: decompressed stream of a .nii.gz (a writer may pad a little). More is refused:
#: a dataset keeps its images byte for byte, and a gzip stream is never inflated
#: further than this.
MAX_TRAILING_BYTES = 1 << 20
#: Bytes of NIfTI header extensions accepted between the header and the voxels.
MAX_EXTENSION_BYTES = 16 * 1024**2
#: Accepted voxel edge lengths in mm: from microscopy-fine to coarser than any MRA.
VOXEL_SIZE_RANGE_MM = (1e-3, 50.0)
#: How far (in voxels) two affines may differ and still describe the same grid.
GRID_TOLERANCE = 1e-2


@dataclass
class Volume:
    """A 3D voxel array with the affine and NIfTI header it came with."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header

    @property
    def shape(self) -> tuple[int, int, int]:
        # A Volume holds 3D data (read_volume reshapes to the header's first three axes).
        return cast("tuple[int, int, int]", tuple(int(n) for n in self.data.shape))

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes."""
        zooms = self.header.get_zooms()
        return cast("tuple[float, float, float]", tuple(float(z) for z in zooms[:3]))


# A stream the reader reads from: a file given or opened, or a GzipFile over one.
_Stream = io.BufferedIOBase | BinaryIO
#: What read_volume_file accepts: a path, the bytes of a file, or an open binary file.
VolumeSource = str | Path | bytes | BinaryIO


@dataclass(frozen=True)
class VolumeFile:
    """What reading a volume learned about the file itself."""

    gzip: bool  # a .nii.gz (gzip magic), else a plain .nii
    nbytes: int  # the file's size in bytes (from the reading position to its end)


def read_volume(
    source: VolumeSource,
    *,
    max_voxels: int | None = None,
    max_volume_bytes: int | None = None,
    label: str | None = None,
) -> Volume:
    """Read a NIfTI-1 volume from a path, from the bytes of a .nii/.nii.gz file, or
    from an open, seekable binary file (e.g. an upload the web server spooled), read
    from its current position and left open. Error messages call it `label` when
    given (an upload's server-side temp path means nothing to the client), else by
    its path ("upload" for bytes and file objects).

    Raises InvalidVolumeError for anything that is not a finite 3D volume of a
    supported dtype on a sane grid (see `check_geometry`), and VolumeTooLargeError
    when a limit is exceeded. The voxels are read straight into one array: reading
    costs the volume's size once, plus its NIfTI extensions."""
    volume, _ = read_volume_file(
        source, max_voxels=max_voxels, max_volume_bytes=max_volume_bytes, label=label
    )
    return volume


def read_volume_file(
    source: VolumeSource,
    *,
    max_voxels: int | None = None,
    max_volume_bytes: int | None = None,
    label: str | None = None,
) -> tuple[Volume, VolumeFile]:
    """`read_volume`, also returning what the file was (gzip or not, its size), so a
    caller never opens it again to find out."""
    if label:
        name = label
    elif isinstance(source, str | Path):
        name = str(source)
    else:
        name = "upload"
    try:
        with open_volume_source(source) as raw:
            start = raw.tell()
            magic = raw.read(2)
            raw.seek(start)
            is_gzip = magic == _GZIP_MAGIC
            if is_gzip:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    volume = _read_nifti(stream, name, max_voxels, max_volume_bytes)
                    _drain_gzip(stream, name)
            else:
                volume = _read_nifti(raw, name, max_voxels, max_volume_bytes)
                end_of_voxels = raw.tell()
                _check_trailing_bytes(raw.seek(0, io.SEEK_END) - end_of_voxels, name)
            nbytes = raw.seek(0, io.SEEK_END) - start
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidVolumeError(f"{name}: corrupt or truncated gzip stream ({exc})") from exc
    except (IsADirectoryError, PermissionError) as exc:
        raise InvalidVolumeError(f"cannot read {name}: {exc.strerror}") from exc
    return volume, VolumeFile(gzip=is_gzip, nbytes=nbytes)


def open_volume_source(source: VolumeSource) -> AbstractContextManager[BinaryIO]:
    """A context that yields a binary stream of `source`; it closes only what it opened
    (a caller's file object stays open)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)
    if isinstance(source, str | Path):
        return open(source, "rb")  # noqa: SIM115 - closed by the caller's with-block
    return nullcontext(source)


def check_geometry(header: nib.Nifti1Header, name: str = "volume") -> np.ndarray:
    """Refuse a header whose grid is not a real one; return its affine.

    Voxel sizes must be finite and within VOXEL_SIZE_RANGE_MM (they set filter sizes
    and resampling, so an absurd one would make a job run without end), every affine
    the header declares (sform, qform) finite and invertible, and the intensity
    scaling finite. Checked at upload, so no job ever starts on such a grid."""
    low, high = VOXEL_SIZE_RANGE_MM
    zooms = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    if not np.all(np.isfinite(zooms)):
        raise InvalidVolumeError(f"{name}: the voxel size (pixdim) {_mm(zooms)} is not finite")
    # Every affine a reader may pick (viewers differ in which one wins); this package
    # uses the sform, else the qform, else the one pixdim implies.
    declared: dict[str, Callable[[], Any]] = {}
    if int(header["qform_code"]) > 0:
        declared["qform"] = header.get_qform
    if int(header["sform_code"]) > 0:
        declared["sform"] = header.get_sform
    if not declared:
        declared["pixdim"] = header.get_best_affine
    for label, get in declared.items():
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                affine = np.asarray(get(), dtype=np.float64)
        except Exception as exc:  # nibabel raises several types for broken quaternions
            raise InvalidVolumeError(f"{name}: the {label} affine is unreadable ({exc})") from exc
        if not np.all(np.isfinite(affine)):
            raise InvalidVolumeError(f"{name}: the {label} affine holds NaN or infinite values")
        sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        if not np.all((sizes >= low) & (sizes <= high)):
            raise InvalidVolumeError(
                f"{name}: the {label} affine gives voxel sizes {_mm(sizes)}; "
                f"each must be between {low:g} and {high:g} mm"
            )
        # Invertible, not merely non-zero columns: no two axes along one direction.
        if abs(np.linalg.det(affine[:3, :3])) < 1e-6 * float(np.prod(sizes)):
            raise InvalidVolumeError(f"{name}: the {label} affine is singular (axes collapse)")
    spacing = np.abs(zooms)
    if not np.all((spacing >= low) & (spacing <= high)):
        raise InvalidVolumeError(
            f"{name}: voxel size {_mm(spacing)} (pixdim); each must be between "
            f"{low:g} and {high:g} mm"
        )
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    scaled = math.isfinite(slope) and slope != 0  # 0 or NaN slope: no scaling
    if math.isinf(slope) or (scaled and not math.isfinite(inter)):
        raise InvalidVolumeError(
            f"{name}: the intensity scaling (scl_slope {slope:g}, scl_inter {inter:g}) "
            "is not finite"
        )
    return np.asarray(header.get_best_affine(), dtype=np.float64)


def nifti_scaling(header: nib.Nifti1Header | None) -> tuple[float, float]:
    """(slope, intercept) of a NIfTI header; (1, 0) when unset."""
    if header is None:
        return 1.0, 0.0
    slope, intercept = header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    intercept = 0.0 if intercept is None or not np.isfinite(intercept) else float(intercept)
    return slope, intercept


def nonzero_intensities(volume: Volume) -> np.ndarray:
    """Where the volume's intensities (its stored values scaled by scl_slope and
    scl_inter) are non-zero, as a bool array: the vessels of a mask. Plane by plane,
    so a scaled volume never needs a whole float copy."""
    slope, intercept = nifti_scaling(volume.header)
    if (slope, intercept) == (1.0, 0.0):
        return volume.data != 0
    nonzero = np.empty(volume.shape, dtype=bool)
    for index, plane in enumerate(volume.data):
        np.not_equal(plane * slope + intercept, 0, out=nonzero[index])
    return nonzero


def same_grid(affine: np.ndarray, other: np.ndarray) -> bool:
    """Whether two affines place voxels within GRID_TOLERANCE of a voxel of each other
    (masks saved by other tools round the affine differently)."""
    affine, other = np.asarray(affine, np.float64), np.asarray(other, np.float64)
    voxel_mm = float(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).min())
    return bool(np.abs(affine[:3] - other[:3]).max() <= GRID_TOLERANCE * voxel_mm)


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
    bool arrays are written as uint8, without scaling (a mask).
    """
    data = np.asarray(data)
    is_mask = data.dtype == np.bool_
    if is_mask:
        data = data.astype(np.uint8)
    if data.shape != like.shape:
        raise InvalidVolumeError(f"array shape {data.shape} does not match the volume {like.shape}")
    if data.dtype not in SUPPORTED_DTYPES:
        raise InvalidVolumeError(f"cannot write dtype {data.dtype}; use one of {_dtype_names()}")
    header = like.header.copy()
    header.set_data_dtype(data.dtype)
    image = nib.Nifti1Image(data, like.affine, header)
    if data.dtype == like.dtype and not is_mask:
        # nibabel clears the scaling of a header given with an array; put it back.
        for field in ("scl_slope", "scl_inter"):
            image.header[field] = like.header[field]
    nii = image.to_bytes()
    # mtime=0 keeps the output reproducible byte for byte.
    return _gzip_bytes(nii) if gzip else nii


def _gzip_bytes(payload: bytes) -> bytes:
    return gzip.compress(payload, compresslevel=6, mtime=0)


def _read_nifti(
    stream: _Stream, name: str, max_voxels: int | None, max_volume_bytes: int | None
) -> Volume:
    """Read and check the header against the limits, then read exactly the declared
    voxels into one array."""
    head = _read_up_to(stream, NIFTI1_HEADER_NBYTES)
    header = _parse_header(head, name)
    shape, dtype = _checked_shape_and_dtype(header, name)
    n_voxels = math.prod(shape)
    if max_voxels is not None and n_voxels > max_voxels:
        raise VolumeTooLargeError(
            f"{name}: {n_voxels} voxels {shape} exceed the limit of {max_voxels}"
        )
    data_nbytes = n_voxels * dtype.itemsize
    if max_volume_bytes is not None and data_nbytes > max_volume_bytes:
        raise VolumeTooLargeError(
            f"{name}: {shape} {dtype.name} voxels take {data_nbytes} bytes, over the limit "
            f"of {max_volume_bytes} (VESSELZIP_MAX_VOLUME_BYTES)"
        )
    offset = _checked_data_offset(header, name)
    extensions = _read_up_to(stream, offset - NIFTI1_HEADER_NBYTES)
    if len(extensions) < offset - NIFTI1_HEADER_NBYTES:
        raise InvalidVolumeError(f"{name}: truncated file (it ends before the voxel data)")
    try:
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(head + extensions), check=False)
    except Exception as exc:
        raise InvalidVolumeError(f"{name}: unreadable NIfTI header ({exc})") from exc
    affine = check_geometry(header, name)

    data = np.empty(n_voxels, dtype=dtype)
    got = _read_into(stream, data.data.cast("B"))
    if got < data.nbytes:
        raise InvalidVolumeError(
            f"{name}: truncated file ({offset + got} of {offset + data_nbytes} bytes)"
        )
    data = data.reshape(shape[:3], order="F")  # NIfTI stores x fastest
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype.kind == "f":
        bad = data.size - int(np.count_nonzero(np.isfinite(data)))
        if bad:
            raise InvalidVolumeError(f"{name}: {bad} voxel(s) are NaN or infinite")
    # Stored values are kept as they are; the scaling stays in the header so that a
    # volume written back with this header displays the same intensities.
    slope, inter = header.get_slope_inter()
    header.set_slope_inter(1.0 if slope is None else slope, 0.0 if inter is None else inter)
    return Volume(data=data, affine=affine, header=header)


def _checked_data_offset(header: nib.Nifti1Header, name: str) -> int:
    """Where the voxels start: after the 352-byte header, at most MAX_EXTENSION_BYTES later."""
    offset = float(header["vox_offset"])
    first = NIFTI1_HEADER_NBYTES + 4
    if not math.isfinite(offset) or offset != int(offset):
        raise InvalidVolumeError(f"{name}: the data offset (vox_offset {offset:g}) is not valid")
    if not first <= offset <= first + MAX_EXTENSION_BYTES:
        raise InvalidVolumeError(
            f"{name}: the data offset (vox_offset {offset:g}) must be between {first} and "
            f"{first + MAX_EXTENSION_BYTES} (header extensions up to {MAX_EXTENSION_BYTES} bytes)"
        )
    return int(offset)


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


def _read_into(stream: _Stream, buffer: memoryview) -> int:
    """Fill `buffer` from the stream in chunks; returns the bytes read (fewer only at
    the end of the stream)."""
    # Every binary file Python makes (open(), BytesIO, GzipFile, SpooledTemporaryFile)
    # has readinto; typing.BinaryIO merely does not declare it.
    readinto = cast("io.BufferedIOBase", stream).readinto
    filled = 0
    while filled < len(buffer):
        count = readinto(buffer[filled : filled + _CHUNK])
        if not count:
            break
        filled += count
    return filled


def _read_up_to(stream: _Stream, nbytes: int) -> bytes:
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


def _drain_gzip(stream: _Stream, name: str) -> None:
    """Read to the end of the gzip stream so its CRC is checked, refusing bulky trailers."""
    trailing = 0
    while part := stream.read(_CHUNK):
        trailing += len(part)
        _check_trailing_bytes(trailing, name)


def _check_trailing_bytes(count: int, name: str) -> None:
    if count > MAX_TRAILING_BYTES:
        raise InvalidVolumeError(
            f"{name}: the file holds far more data than declared (over {MAX_TRAILING_BYTES} "
            "bytes after the voxels its header declares)"
        )


def _mm(values) -> str:
    return " x ".join(f"{float(v):g}" for v in values) + " mm"


def _dtype_names() -> str:
    return ", ".join(dtype.name for dtype in SUPPORTED_DTYPES)
