"""The .vz blob format (vesselzip.container): round trips, info, and every kind of damage."""

import hashlib
import json
import struct
import zlib

import nibabel as nib
import numpy as np
import pytest

from vesselzip import container
from vesselzip.codecs import get_codec
from vesselzip.container import (
    MAGIC,
    VERSION,
    decode_volume,
    encode_volume,
    read_blob_info,
    read_blob_meta,
)
from vesselzip.errors import CorruptBlobError, InvalidCodecConfigError, VolumeTooLargeError
from vesselzip.volumes import Volume, read_volume

AFFINE = np.array(
    [[0.4, 0.0, 0.0, -80.0], [0.0, 0.4, 0.0, -100.0], [0.0, 0.0, 0.6, -50.0], [0, 0, 0, 1.0]]
)
PREFIX = struct.Struct("<4sHII")  # as docs/format.md describes it


@pytest.fixture
def volume(rng) -> Volume:
    z, y, x = np.meshgrid(*(np.arange(n) for n in (13, 14, 10)), indexing="ij")
    data = (400 + 300 * np.sin(z / 3) * np.cos(y / 4) + 20 * rng.standard_normal(z.shape)).astype(
        np.int16
    )
    image = nib.Nifti1Image(data, AFFINE)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_slope_inter(1.5, 2.0)
    return read_volume(image.to_bytes())


def split(blob: bytes) -> tuple[dict, int]:
    """The JSON header of a blob and where the NIfTI header starts."""
    _, _, meta_nbytes, _ = PREFIX.unpack_from(blob)
    return json.loads(blob[PREFIX.size : PREFIX.size + meta_nbytes]), PREFIX.size + meta_nbytes


def with_meta(blob: bytes, meta: dict) -> bytes:
    """The same blob with a different JSON header (and a correct JSON checksum)."""
    _, start = split(blob)
    meta_bytes = json.dumps(meta).encode()
    prefix = PREFIX.pack(MAGIC, VERSION, len(meta_bytes), zlib.crc32(meta_bytes))
    return prefix + meta_bytes + blob[start:]


@pytest.mark.parametrize(
    "config",
    [
        {"id": "none"},
        {"id": "zfp", "mode": "reversible"},
        {"id": "zfp", "mode": "tolerance", "value": 25},
        {"id": "zfp", "mode": "rate", "value": 2},
    ],
)
def test_round_trip_keeps_grid_header_and_dtype(volume, config):
    blob = encode_volume(volume, get_codec(config))
    decoded = decode_volume(blob)
    assert decoded.dtype == volume.dtype
    assert decoded.shape == volume.shape
    np.testing.assert_array_equal(decoded.affine, volume.affine)
    assert decoded.header.binaryblock == volume.header.binaryblock
    assert decoded.header.get_slope_inter() == (1.5, 2.0)
    assert decoded.spacing == volume.spacing
    error = np.abs(decoded.data.astype(np.int64) - volume.data).max()
    if config.get("mode") == "tolerance":
        assert error <= 25
    elif config.get("mode") != "rate":
        assert error == 0


def test_layout_matches_the_documented_format(volume):
    blob = encode_volume(volume, get_codec({"id": "zfp", "mode": "rate", "value": 4}))
    magic, version, meta_nbytes, meta_crc = PREFIX.unpack_from(blob)
    assert (magic, version) == (b"VZIP", 2)
    meta, nifti_start = split(blob)
    # 13 planes of 14 x 10 voxels make a single slab.
    assert meta["slab_planes"] == 13 and meta["slab_nbytes"] == [meta["payload_nbytes"]]
    assert zlib.crc32(blob[PREFIX.size : nifti_start]) == meta_crc
    assert meta["codec"] == {"id": "zfp", "mode": "rate", "value": 4}
    assert meta["shape"] == [13, 14, 10] and meta["dtype"] == "int16"
    assert meta["raw_nbytes"] == volume.data.nbytes
    assert np.array_equal(meta["affine"], volume.affine)
    nifti = blob[nifti_start : nifti_start + 348]
    assert nifti == volume.header.binaryblock
    assert len(blob) == nifti_start + 348 + meta["payload_nbytes"]


def test_info_describes_the_blob_without_decoding(volume):
    blob = encode_volume(volume, get_codec({"id": "zfp", "mode": "rate", "value": 2}))
    info = read_blob_info(blob)
    assert info.version == VERSION
    assert info.codec == {"id": "zfp", "mode": "rate", "value": 2}
    assert info.codec_label == "zfp rate=2"
    assert info.shape == (13, 14, 10)
    assert info.dtype == "int16"
    assert info.spacing == pytest.approx((0.4, 0.4, 0.6))
    assert info.raw_nbytes == volume.data.nbytes
    assert info.blob_nbytes == len(blob)
    assert info.compression_ratio == pytest.approx(volume.data.nbytes / len(blob))
    assert info.bits_per_voxel == pytest.approx(8 * len(blob) / volume.data.size)
    assert json.loads(json.dumps(info.to_dict()))["shape"] == [13, 14, 10]


def test_meta_is_read_from_the_header_alone(volume):
    blob = encode_volume(volume, get_codec({"id": "zfp", "mode": "rate", "value": 2}))
    meta = read_blob_meta(blob)
    info = read_blob_info(blob)
    assert meta["payload_nbytes"] == info.payload_nbytes and meta["sha256"] == info.sha256
    assert meta["codec"] == info.codec and tuple(meta["shape"]) == info.shape
    # The payload is not hashed (read_blob_info and decode_volume check it)...
    damaged = bytearray(blob)
    damaged[-1] ^= 0x5A
    assert read_blob_meta(bytes(damaged)) == meta
    # ...the JSON header and the prefix are.
    damaged = bytearray(blob)
    damaged[20] ^= 0x5A
    with pytest.raises(CorruptBlobError):
        read_blob_meta(bytes(damaged))
    with pytest.raises(CorruptBlobError, match="not a vesselzip blob"):
        read_blob_meta(b"PK\x03\x04" + blob[4:])


def test_encoding_is_deterministic(volume):
    codec = get_codec({"id": "zfp", "mode": "tolerance", "value": 10})
    assert encode_volume(volume, codec) == encode_volume(volume, codec)


def test_every_damaged_byte_is_caught(volume):
    blob = encode_volume(volume, get_codec({"id": "zfp", "mode": "tolerance", "value": 10}))
    positions = list(range(0, len(blob), max(1, len(blob) // 300))) + [len(blob) - 1]
    for position in positions:
        damaged = bytearray(blob)
        damaged[position] ^= 0x5A
        with pytest.raises(CorruptBlobError):
            decode_volume(bytes(damaged))
        with pytest.raises(CorruptBlobError):
            read_blob_info(bytes(damaged))


def test_truncated_or_extended_blobs_are_caught(volume):
    blob = encode_volume(volume, get_codec({"id": "none"}))
    for length in (0, 3, 13, 14, 100, len(blob) // 2, len(blob) - 1):
        with pytest.raises(CorruptBlobError):
            decode_volume(blob[:length])
    with pytest.raises(CorruptBlobError, match="expected"):
        decode_volume(blob + b"\0")


def test_wrong_magic_and_unknown_version_are_named(volume):
    blob = encode_volume(volume, get_codec({"id": "none"}))
    with pytest.raises(CorruptBlobError, match="not a vesselzip blob"):
        decode_volume(b"PK\x03\x04" + blob[4:])
    future = blob[:4] + struct.pack("<H", VERSION + 1) + blob[6:]
    with pytest.raises(CorruptBlobError, match="unsupported blob version 3"):
        read_blob_info(future)


@pytest.mark.parametrize(
    "change",
    [
        lambda meta: meta.pop("shape"),
        lambda meta: meta.update(shape=[13, 14]),
        lambda meta: meta.update(shape=[13, 14, -10]),
        lambda meta: meta.update(dtype="complex128"),
        lambda meta: meta.update(affine=[[1, 0], [0, 1]]),
        lambda meta: meta.update(raw_nbytes=5),
        lambda meta: meta.update(payload_nbytes="many"),
        lambda meta: meta.update(codec="zfp"),
        lambda meta: meta.pop("slab_planes"),
        lambda meta: meta.update(slab_planes=0),
        lambda meta: meta.update(slab_planes=4),  # 13 planes need 4 slabs, not 1
        lambda meta: meta.update(slab_nbytes=[1, meta["payload_nbytes"] - 1]),
        lambda meta: meta.update(slab_nbytes=[meta["payload_nbytes"] + 1]),
    ],
)
def test_inconsistent_json_headers_are_caught(volume, change):
    blob = encode_volume(volume, get_codec({"id": "none"}))
    meta, _ = split(blob)
    change(meta)
    with pytest.raises(CorruptBlobError):
        decode_volume(with_meta(blob, meta))


def test_json_that_does_not_parse_is_caught(volume):
    blob = encode_volume(volume, get_codec({"id": "none"}))
    _, start = split(blob)
    junk = b"{not json"
    prefix = PREFIX.pack(MAGIC, VERSION, len(junk), zlib.crc32(junk))
    with pytest.raises(CorruptBlobError, match="bad JSON"):
        decode_volume(prefix + junk + blob[start:])


def test_a_codec_this_installation_lacks_is_a_config_error(volume):
    blob = encode_volume(volume, get_codec({"id": "none"}))
    meta, _ = split(blob)
    meta["codec"] = {"id": "mgard", "abs": 1.0}
    with pytest.raises(InvalidCodecConfigError, match="unknown codec"):
        decode_volume(with_meta(blob, meta))


def test_voxel_limit_on_decode(volume):
    blob = encode_volume(volume, get_codec({"id": "none"}))
    decode_volume(blob, max_voxels=volume.data.size)
    with pytest.raises(VolumeTooLargeError):
        decode_volume(blob, max_voxels=volume.data.size - 1)


def test_paper_fixed_rate_ratio_on_a_whole_blob(rng):
    # 128x128x96 int16 at rate 2: the payload is 1/8 of the raw size plus zfp's header,
    # and the blob adds under 1 kB of description.
    data = rng.integers(0, 1200, size=(128, 128, 96), dtype=np.int16)
    volume = read_volume(nib.Nifti1Image(data, AFFINE).to_bytes())
    info = read_blob_info(
        encode_volume(volume, get_codec({"id": "zfp", "mode": "rate", "value": 2}))
    )
    assert info.payload_nbytes == data.nbytes // 8 + 16
    assert info.blob_nbytes - info.payload_nbytes < 1000
    assert info.compression_ratio == pytest.approx(7.99, abs=0.01)


def version_1_blob(volume: Volume, codec) -> bytes:
    """A blob as version 1 wrote it: one payload for the whole volume, no slab keys."""
    payload = codec.encode(volume.data)
    header = volume.header.binaryblock
    meta = {
        "codec": codec.get_config(),
        "shape": list(volume.shape),
        "dtype": volume.dtype.name,
        "affine": np.asarray(volume.affine).tolist(),
        "raw_nbytes": int(volume.data.nbytes),
        "payload_nbytes": len(payload),
        "sha256": hashlib.sha256(header + payload).hexdigest(),
    }
    meta_bytes = json.dumps(meta).encode()
    return (
        PREFIX.pack(MAGIC, 1, len(meta_bytes), zlib.crc32(meta_bytes))
        + meta_bytes
        + header
        + payload
    )


@pytest.mark.parametrize(
    "config",
    [
        {"id": "none"},
        {"id": "zfp", "mode": "tolerance", "value": 25},
        {"id": "zfp", "mode": "rate", "value": 4},
    ],
)
def test_version_1_blobs_are_still_read(volume, config):
    codec = get_codec(config)
    old = version_1_blob(volume, codec)
    info = read_blob_info(old)
    assert info.version == 1 and info.payload_nbytes == len(codec.encode(volume.data))
    decoded = decode_volume(old)
    expected = codec.decode(codec.encode(volume.data), volume.shape, volume.dtype)
    np.testing.assert_array_equal(decoded.data, expected)
    assert decoded.header.binaryblock == volume.header.binaryblock


@pytest.mark.parametrize(
    "config",
    [
        {"id": "none"},
        {"id": "zfp", "mode": "reversible"},
        {"id": "zfp", "mode": "tolerance", "value": 25},
        {"id": "zfp", "mode": "relative_tolerance", "value": 0.05},
        {"id": "zfp", "mode": "rate", "value": 3},
        {"id": "zfp", "mode": "precision", "value": 12},
    ],
)
@pytest.mark.parametrize("order", ["C", "F"])
def test_slabs_decode_to_what_one_whole_volume_stream_gives(monkeypatch, rng, config, order):
    # 4-plane slabs of 15 x 9 planes: 4 slabs, the last one of 2 planes (a partial zfp
    # block); zfp codes 4x4x4 blocks independently, so the voxels match exactly.
    monkeypatch.setattr(container, "SLAB_VOXELS", 4 * 15 * 9)
    data = np.asarray(rng.integers(-500, 1500, size=(14, 15, 9), dtype=np.int16), order=order)
    volume = read_volume(nib.Nifti1Image(data, AFFINE).to_bytes())
    codec = get_codec(config)
    blob = encode_volume(volume, codec)
    meta = read_blob_meta(blob)
    assert meta["slab_planes"] == 4 and len(meta["slab_nbytes"]) == 4
    decoded = decode_volume(blob, order=order)
    assert decoded.data.flags[f"{order}_CONTIGUOUS"]
    whole = codec.decode(codec.encode(volume.data), volume.shape, volume.dtype)
    np.testing.assert_array_equal(decoded.data, whole)
    assert read_blob_info(blob).payload_nbytes == sum(meta["slab_nbytes"])


def test_slab_planes_are_whole_zfp_blocks():
    assert container.slab_planes((160, 512, 512)) == 16
    assert container.slab_planes((512, 512, 512)) == 16
    assert container.slab_planes((100, 700, 700)) == 8  # 8.56 planes, rounded down to 4s
    assert container.slab_planes((9, 2000, 2000)) == 4  # at least one block of planes
    assert container.slab_planes((96, 128, 128)) == 96  # small: one slab
