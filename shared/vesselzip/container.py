"""The stored compressed-volume format (".vz" blob), described in docs/format.md.

    "VZIP" | u16 version | u32 JSON length | u32 JSON crc32 | JSON | NIfTI-1 header | payload

All integers little-endian. The JSON holds the codec config, shape, dtype, affine,
sizes and the sha256 of the NIfTI header and payload, so every byte of a blob is
checked before it is decoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import nibabel as nib
import numpy as np

from vesselzip.codecs import Codec, get_codec
from vesselzip.errors import CorruptBlobError, VolumeTooLargeError
from vesselzip.volumes import NIFTI1_HEADER_NBYTES, SUPPORTED_DTYPES, Volume

MAGIC = b"VZIP"
VERSION = 1
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


def encode_volume(volume: Volume, codec: Codec) -> bytes:
    """Compress `volume` with `codec` into a self-describing blob."""
    payload = codec.encode(volume.data)
    nifti_header = volume.header.binaryblock
    meta = {
        "codec": codec.get_config(),
        "shape": list(volume.shape),
        "dtype": volume.dtype.name,
        "affine": np.asarray(volume.affine, dtype=np.float64).tolist(),
        "raw_nbytes": int(volume.data.nbytes),
        "payload_nbytes": len(payload),
        "sha256": _sha256(nifti_header, payload),
    }
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    prefix = _PREFIX.pack(MAGIC, VERSION, len(meta_bytes), zlib.crc32(meta_bytes))
    return b"".join((prefix, meta_bytes, nifti_header, payload))


def decode_volume(blob: bytes, *, max_voxels: int | None = None) -> Volume:
    """Check a blob and decode it back into a Volume (CorruptBlobError if it is damaged)."""
    meta, nifti_header, payload = _split(blob)
    shape = tuple(meta["shape"])
    if max_voxels is not None and math.prod(shape) > max_voxels:
        raise VolumeTooLargeError(f"the blob holds {math.prod(shape)} voxels, over {max_voxels}")
    header = _parse_nifti_header(nifti_header)
    codec = get_codec(meta["codec"])
    data = codec.decode(payload, shape, np.dtype(meta["dtype"]))
    return Volume(data=data, affine=np.array(meta["affine"], dtype=np.float64), header=header)


def read_blob_info(blob: bytes) -> BlobInfo:
    """Check a blob and describe it without decoding the payload."""
    meta, nifti_header, payload = _split(blob)
    header = _parse_nifti_header(nifti_header)
    n_voxels = math.prod(meta["shape"])
    return BlobInfo(
        version=VERSION,
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
    """The blob's JSON header (codec, shape, dtype, affine, raw and payload sizes, the
    payload's sha256), read without hashing or decoding the payload: magic, version,
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
    if version != VERSION:
        raise CorruptBlobError(
            f"unsupported blob version {version}; this vesselzip reads version {VERSION}"
        )
    meta_end = _PREFIX.size + meta_nbytes
    if len(view) < meta_end + NIFTI1_HEADER_NBYTES:
        raise CorruptBlobError("truncated blob: the header is incomplete")
    meta_bytes = bytes(view[_PREFIX.size : meta_end])
    if zlib.crc32(meta_bytes) != meta_crc:
        raise CorruptBlobError("corrupt blob: the JSON header fails its checksum")
    return _parse_meta(meta_bytes), meta_end


def _split(blob: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """Check magic, version, lengths and checksums; return (meta, NIfTI header, payload)."""
    view = memoryview(blob)
    meta, meta_end = _read_meta(view)
    payload_start = meta_end + NIFTI1_HEADER_NBYTES
    expected = payload_start + meta["payload_nbytes"]
    if len(view) != expected:
        kind = "truncated" if len(view) < expected else "corrupt"
        raise CorruptBlobError(f"{kind} blob: {len(view)} bytes, expected {expected}")
    nifti_header = bytes(view[meta_end:payload_start])
    payload = bytes(view[payload_start:])
    if _sha256(nifti_header, payload) != meta["sha256"]:
        raise CorruptBlobError("corrupt blob: the NIfTI header or payload fails its checksum")
    return meta, nifti_header, payload


def _parse_meta(meta_bytes: bytes) -> dict[str, Any]:
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
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptBlobError(f"corrupt blob: bad JSON header ({exc})") from exc
    if not ok:
        raise CorruptBlobError("corrupt blob: the JSON header has missing or invalid fields")
    return meta


def _parse_nifti_header(nifti_header: bytes) -> nib.Nifti1Header:
    try:
        return nib.Nifti1Header.from_fileobj(io.BytesIO(nifti_header), check=False)
    except Exception as exc:
        raise CorruptBlobError(f"corrupt blob: unreadable NIfTI header ({exc})") from exc


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()
