"""The stored compressed-volume format (".vz" blob), described in docs/format.md.

    "VZIP" | u16 version | u32 JSON length | u32 JSON crc32 | JSON | NIfTI-1 header | payload

All integers little-endian. The JSON holds the codec config, shape, dtype, affine,
sizes and the sha256 of the NIfTI header and payload, so every byte of a blob is
checked before it is decoded.

Version 2 codes the volume in slabs along its first axis (`slab_planes` planes each,
`slab_nbytes` bytes of payload each), so encoding and decoding a large volume never
hold a full-size float copy of it. Version 1 blobs (one payload for the whole volume)
are still read.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Literal

import nibabel as nib
import numpy as np

from vesselzip.codecs import Codec, get_codec
from vesselzip.errors import CorruptBlobError, VolumeTooLargeError
from vesselzip.volumes import NIFTI1_HEADER_NBYTES, SUPPORTED_DTYPES, Volume

MAGIC = b"VZIP"
VERSION = 2
#: Versions this module reads; 1 is a single slab holding every plane.
READABLE_VERSIONS = (1, 2)
# Voxels per slab (16 MiB as float32, 16 planes of 512 x 512); a slab is a whole
# number of zfp's 4-plane blocks, so slabs code exactly as the whole volume would.
SLAB_VOXELS = 1 << 22
_SLAB_PLANE_MULTIPLE = 4
_PREFIX = struct.Struct("<4sHII")  # magic, version, JSON length, JSON crc32


@dataclass(frozen=True)
class BlobInfo:
    """What a blob holds, read without decoding its payload."""

    version: int
    codec: dict[str, Any]
    codec_label: str
    shape: tuple[int, ...]
    dtype: str
    affine: list[list[float]]
    spacing: tuple[float, ...]
    raw_nbytes: int
    payload_nbytes: int
    blob_nbytes: int
    compression_ratio: float  # raw_nbytes / blob_nbytes: the whole blob counts
    bits_per_voxel: float  # of the whole blob
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def slab_planes(shape: tuple[int, ...]) -> int:
    """Planes per slab for a volume of `shape`: about SLAB_VOXELS voxels, a multiple of
    4 planes, and never more than the volume has (a small volume is one slab)."""
    plane_voxels = max(1, math.prod(shape[1:]))
    planes = SLAB_VOXELS // plane_voxels // _SLAB_PLANE_MULTIPLE * _SLAB_PLANE_MULTIPLE
    return min(max(_SLAB_PLANE_MULTIPLE, planes), shape[0])


def encode_volume(volume: Volume, codec: Codec) -> bytes:
    """Compress `volume` with `codec`, slab by slab, into a self-describing blob."""
    planes = slab_planes(volume.shape)
    return blob_from_slabs(volume, codec, planes, list(codec.encode_slabs(volume.data, planes)))


def blob_from_slabs(volume: Volume, codec: Codec, planes: int, payloads: list[bytes]) -> bytes:
    """The blob holding `payloads`, the slabs of `planes` planes that
    `codec.encode_slabs(volume.data, planes)` yielded, in order."""
    nifti_header = volume.header.binaryblock
    meta = {
        "codec": codec.get_config(),
        "shape": list(volume.shape),
        "dtype": volume.dtype.name,
        "affine": np.asarray(volume.affine, dtype=np.float64).tolist(),
        "raw_nbytes": int(volume.data.nbytes),
        "payload_nbytes": sum(len(p) for p in payloads),
        "slab_planes": planes,
        "slab_nbytes": [len(p) for p in payloads],
        "sha256": _sha256(nifti_header, *payloads),
    }
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    prefix = _PREFIX.pack(MAGIC, VERSION, len(meta_bytes), zlib.crc32(meta_bytes))
    return b"".join((prefix, meta_bytes, nifti_header, *payloads))


def decode_slab(codec: Codec, payload: bytes | memoryview, out: np.ndarray) -> None:
    """Decode one slab's stream into `out` (a slab of the decoded volume, any layout)."""
    # One slab's stream at a time (zfp copies its input to bytes anyway).
    out[...] = codec.decode(bytes(payload), out.shape, out.dtype)


def decode_volume(
    blob: bytes, *, max_voxels: int | None = None, order: Literal["C", "F"] = "C"
) -> Volume:
    """Check a blob and decode it back into a Volume (CorruptBlobError if it is damaged),
    slab by slab into one array of the stored dtype laid out in `order` (match the
    original's layout to compare the two quickly)."""
    meta, nifti_header, payload = _split(blob)
    shape = tuple(meta["shape"])
    if max_voxels is not None and math.prod(shape) > max_voxels:
        raise VolumeTooLargeError(f"the blob holds {math.prod(shape)} voxels, over {max_voxels}")
    header = _parse_nifti_header(nifti_header)
    codec = get_codec(meta["codec"])
    dtype = np.dtype(meta["dtype"])
    data = np.empty(shape, dtype=dtype, order=order)
    planes, offset = meta["slab_planes"], 0
    for index, nbytes in enumerate(meta["slab_nbytes"]):
        first = index * planes
        decode_slab(codec, payload[offset : offset + nbytes], data[first : first + planes])
        offset += nbytes
    return Volume(data=data, affine=np.array(meta["affine"], dtype=np.float64), header=header)


def read_blob_info(blob: bytes) -> BlobInfo:
    """Check a blob and describe it without decoding the payload."""
    meta, nifti_header, payload = _split(blob)
    header = _parse_nifti_header(nifti_header)
    n_voxels = math.prod(meta["shape"])
    return BlobInfo(
        version=meta["version"],
        codec=meta["codec"],
        codec_label=get_codec(meta["codec"]).describe(),
        shape=tuple(meta["shape"]),
        dtype=meta["dtype"],
        affine=meta["affine"],
        spacing=tuple(float(z) for z in header.get_zooms()[:3]),
        raw_nbytes=meta["raw_nbytes"],
        payload_nbytes=meta["payload_nbytes"],
        blob_nbytes=len(blob),
        compression_ratio=meta["raw_nbytes"] / len(blob),
        bits_per_voxel=8 * len(blob) / n_voxels,
        sha256=meta["sha256"],
    )


def read_blob_meta(blob: bytes) -> dict[str, Any]:
    """The blob's JSON header (codec, shape, dtype, affine, raw and payload sizes, slabs,
    the payload's sha256; plus "version", and for a version 1 blob the one slab it
    holds), read without hashing or decoding the payload: magic, version,
    the JSON's own checksum and its fields are checked, the payload is not (use
    `read_blob_info` or `decode_volume` for a blob from elsewhere)."""
    meta, _ = _read_meta(memoryview(blob))
    return meta


def _read_meta(view: memoryview) -> tuple[dict[str, Any], int]:
    """Check magic, version and the JSON header; return (meta, where the JSON ends)."""
    if len(view) < _PREFIX.size:
        raise CorruptBlobError(f"not a vesselzip blob: only {len(view)} bytes")
    magic, version, meta_nbytes, meta_crc = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise CorruptBlobError(f"not a vesselzip blob (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version not in READABLE_VERSIONS:
        raise CorruptBlobError(
            f"unsupported blob version {version}; this vesselzip reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    meta_end = _PREFIX.size + meta_nbytes
    if len(view) < meta_end + NIFTI1_HEADER_NBYTES:
        raise CorruptBlobError("truncated blob: the header is incomplete")
    meta_bytes = bytes(view[_PREFIX.size : meta_end])
    if zlib.crc32(meta_bytes) != meta_crc:
        raise CorruptBlobError("corrupt blob: the JSON header fails its checksum")
    return _parse_meta(meta_bytes, version), meta_end


def _split(blob: bytes) -> tuple[dict[str, Any], bytes, memoryview]:
    """Check magic, version, lengths and checksums; return (meta, NIfTI header, payload)."""
    view = memoryview(blob)
    meta, meta_end = _read_meta(view)
    payload_start = meta_end + NIFTI1_HEADER_NBYTES
    expected = payload_start + meta["payload_nbytes"]
    if len(view) != expected:
        kind = "truncated" if len(view) < expected else "corrupt"
        raise CorruptBlobError(f"{kind} blob: {len(view)} bytes, expected {expected}")
    nifti_header = bytes(view[meta_end:payload_start])
    payload = view[payload_start:]  # a view: the payload is not copied
    if _sha256(nifti_header, payload) != meta["sha256"]:
        raise CorruptBlobError("corrupt blob: the NIfTI header or payload fails its checksum")
    return meta, nifti_header, payload


def _parse_meta(meta_bytes: bytes, version: int) -> dict[str, Any]:
    try:
        meta = json.loads(meta_bytes)
        shape = meta["shape"]
        ok = (
            isinstance(meta["codec"], dict)
            and isinstance(shape, list)
            and len(shape) == 3
            and all(isinstance(n, int) and n > 0 for n in shape)
            and np.dtype(meta["dtype"]) in SUPPORTED_DTYPES
            and np.array(meta["affine"], dtype=np.float64).shape == (4, 4)
            and meta["raw_nbytes"] == math.prod(shape) * np.dtype(meta["dtype"]).itemsize
            and isinstance(meta["payload_nbytes"], int)
            and meta["payload_nbytes"] >= 0
            and isinstance(meta["sha256"], str)
        )
        if ok and version == 1:  # one slab of every plane
            meta.update(slab_planes=shape[0], slab_nbytes=[meta["payload_nbytes"]])
        planes, slab_nbytes = meta["slab_planes"], meta["slab_nbytes"]
        ok = (
            ok
            and isinstance(planes, int)
            and planes > 0
            and isinstance(slab_nbytes, list)
            and len(slab_nbytes) == math.ceil(shape[0] / planes)
            and all(isinstance(n, int) and n >= 0 for n in slab_nbytes)
            and sum(slab_nbytes) == meta["payload_nbytes"]
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptBlobError(f"corrupt blob: bad JSON header ({exc})") from exc
    if not ok:
        raise CorruptBlobError("corrupt blob: the JSON header has missing or invalid fields")
    meta["version"] = version
    return meta


def _parse_nifti_header(nifti_header: bytes) -> nib.Nifti1Header:
    try:
        return nib.Nifti1Header.from_fileobj(io.BytesIO(nifti_header), check=False)
    except Exception as exc:
        raise CorruptBlobError(f"corrupt blob: unreadable NIfTI header ({exc})") from exc


def _sha256(*parts: bytes | memoryview) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()
