"""Reading, validating and writing NIfTI volumes (vesselzip.volumes)."""

import gzip
import io
import zlib

import nibabel as nib
import numpy as np
import pytest

from vesselzip.errors import InvalidVolumeError, VolumeTooLargeError
from vesselzip.volumes import (
    MAX_TRAILING_BYTES,
    Volume,
    nonzero_intensities,
    read_volume,
    read_volume_file,
    volume_to_bytes,
    write_volume,
)

AFFINE = np.array(
    [
        [-0.5, 0.0, 0.0, 90.0],
        [0.0, 0.45, 0.0, -120.0],
        [0.0, 0.0, 0.8, -60.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def nifti_bytes(data, affine=AFFINE, *, header=None, gz=True) -> bytes:
    image = nib.Nifti1Image(data, affine, header)
    raw = image.to_bytes()
    return gzip.compress(raw) if gz else raw


def random_volume(rng, dtype, shape=(9, 10, 11)) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "int16", "uint16", "int32", "float32", "float64"]
)
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_keeps_values_dtype_and_grid(tmp_path, rng, dtype, suffix):
    data = random_volume(rng, dtype)
    source = tmp_path / f"in{suffix}"
    nib.save(nib.Nifti1Image(data, AFFINE), source)

    volume = read_volume(source)
    assert volume.dtype == np.dtype(dtype)
    assert volume.shape == data.shape
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, AFFINE, atol=1e-6)
    assert volume.spacing == pytest.approx((0.5, 0.45, 0.8))

    out = write_volume(tmp_path / f"out{suffix}", volume.data, volume)
    again = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(again.dataobj), data)
    np.testing.assert_array_equal(again.affine, nib.load(source).affine)


def test_bytes_and_path_give_the_same_volume(tmp_path, rng):
    data = random_volume(rng, "int16")
    payload = nifti_bytes(data)
    (tmp_path / "v.nii.gz").write_bytes(payload)
    from_bytes = read_volume(payload)
    from_path = read_volume(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(from_bytes.data, from_path.data)
    assert from_bytes.header.binaryblock == from_path.header.binaryblock


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("max_size", [0, 1 << 30], ids=["on-disk", "in-memory"])
def test_an_open_file_reads_like_its_path(tmp_path, rng, gz, max_size):
    """An upload the web server spooled (a SpooledTemporaryFile, in memory or rolled
    over to disk) is read in place, from its current position, and left open."""
    import tempfile

    data = random_volume(rng, "int16")
    payload = nifti_bytes(data, gz=gz)
    (tmp_path / "v.nii").write_bytes(payload)
    with tempfile.SpooledTemporaryFile(max_size=max_size) as upload:
        upload.write(b"JUNK" + payload)
        upload.seek(4)
        volume, file = read_volume_file(upload, label="image (v.nii)")
        assert not upload.closed
    from_path, path_file = read_volume_file(tmp_path / "v.nii")
    np.testing.assert_array_equal(volume.data, data)
    assert volume.header.binaryblock == from_path.header.binaryblock
    assert file == path_file and file.gzip == gz and file.nbytes == len(payload)
    assert read_volume_file(payload)[1] == file


def test_an_open_file_is_named_by_its_label_never_its_temp_path(tmp_path):
    with (tmp_path / "spool-123.tmp").open("w+b") as upload:
        upload.write(b"not a volume at all" * 30)
        upload.seek(0)
        with pytest.raises(InvalidVolumeError, match=r"^image \(a\.nii\): not a NIfTI") as exc:
            read_volume(upload, label="image (a.nii)")
        upload.seek(0)
        with pytest.raises(InvalidVolumeError, match="^upload: ") as unnamed:
            read_volume(upload)
    assert "spool-123" not in str(exc.value) + str(unnamed.value)


def test_mask_written_like_the_image_overlays_it(tmp_path, rng):
    data = random_volume(rng, "int16")
    header = nib.Nifti1Header()
    header.set_qform(AFFINE, code=1)
    header.set_sform(AFFINE, code=4)
    header.set_xyzt_units("mm", "sec")
    volume = read_volume(nifti_bytes(data, header=header))

    mask = volume.data > 0  # bool is written as uint8
    written = nib.load(write_volume(tmp_path / "mask.nii.gz", mask, volume))
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask)
    np.testing.assert_array_equal(written.affine, volume.affine)
    assert written.header["sform_code"] == 4
    assert written.header["qform_code"] == 1
    assert written.header.get_xyzt_units() == ("mm", "sec")
    assert written.header.get_zooms() == volume.header.get_zooms()

    back = read_volume(tmp_path / "mask.nii.gz")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back.data, mask)


def test_scaled_data_keeps_stored_values_and_scaling(tmp_path, rng):
    stored = random_volume(rng, "int16")
    image = nib.Nifti1Image(stored, AFFINE)
    image.header.set_slope_inter(2.0, -10.0)
    volume = read_volume(image.to_bytes())
    assert volume.dtype == np.int16
    np.testing.assert_array_equal(volume.data, stored)
    assert volume.header.get_slope_inter() == (2.0, -10.0)

    # Same dtype: stored values, so the scaling is kept and the intensities match.
    same = nib.load(write_volume(tmp_path / "same.nii", volume.data, volume))
    np.testing.assert_array_equal(same.get_fdata(), stored * 2.0 - 10.0)
    # A mask is not in stored units: its scaling is cleared.
    mask = nib.load(write_volume(tmp_path / "mask.nii", (stored > 0).astype(np.uint8), volume))
    np.testing.assert_array_equal(mask.get_fdata(), stored > 0)


def test_big_endian_file_is_read_in_native_order(rng):
    data = random_volume(rng, "int16")
    header = nib.Nifti1Header(endianness=">")
    header.set_data_dtype(np.int16)
    volume = read_volume(nifti_bytes(data, header=header))
    assert volume.dtype == np.dtype("int16")
    assert volume.data.dtype.isnative
    np.testing.assert_array_equal(volume.data, data)


def test_singleton_fourth_axis_is_dropped(rng):
    data = random_volume(rng, "int16", shape=(5, 6, 7, 1))
    volume = read_volume(nifti_bytes(data))
    assert volume.shape == (5, 6, 7)
    np.testing.assert_array_equal(volume.data, data[..., 0])


@pytest.mark.parametrize(
    ("shape", "message"),
    [((5, 6, 7, 2), "3D volume"), ((5, 6), "3D volume"), ((5, 0, 7), "empty")],
)
def test_wrong_dimensions_are_refused(shape, message):
    with pytest.raises(InvalidVolumeError, match=message):
        read_volume(nifti_bytes(np.zeros(shape, np.int16)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    data = np.zeros((4, 5, 6), np.float32)
    data[1, 2, 3] = bad
    with pytest.raises(InvalidVolumeError, match="1 voxel"):
        read_volume(nifti_bytes(data))


@pytest.mark.parametrize("dtype", ["int64", "uint32", "complex64"])
def test_unsupported_dtypes_are_refused(dtype):
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    data = np.zeros((3, 4, 5), dtype)
    with pytest.raises(InvalidVolumeError, match="not supported"):
        read_volume(nifti_bytes(data, header=header))


@pytest.mark.parametrize(
    "payload",
    [b"", b"hello, not a volume", b"P" * 2000, gzip.compress(b"plain text, gzipped" * 100)],
)
def test_not_nifti_is_refused(payload):
    with pytest.raises(InvalidVolumeError, match="not a NIfTI"):
        read_volume(payload)


def test_nifti2_and_analyze_pairs_are_refused(rng):
    data = random_volume(rng, "int16")
    with pytest.raises(InvalidVolumeError, match="NIfTI-2"):
        read_volume(nib.Nifti2Image(data, AFFINE).to_bytes())
    pair_header = nib.Nifti1Pair(data, AFFINE).header.binaryblock
    with pytest.raises(InvalidVolumeError, match="hdr/.img"):
        read_volume(pair_header + data.tobytes())


def test_truncated_files_are_refused(rng):
    raw = nifti_bytes(random_volume(rng, "int16"), gz=False)
    with pytest.raises(InvalidVolumeError, match="truncated"):
        read_volume(raw[:-10])
    compressed = gzip.compress(raw)
    for cut in (20, len(compressed) // 2, len(compressed) - 4):
        with pytest.raises(InvalidVolumeError, match="gzip"):
            read_volume(compressed[:cut])


def test_corrupt_gzip_is_refused(rng):
    compressed = bytearray(nifti_bytes(random_volume(rng, "int16")))
    compressed[len(compressed) // 2] ^= 0xFF
    with pytest.raises(InvalidVolumeError, match="gzip"):
        read_volume(bytes(compressed))


def test_voxel_limit_is_checked_before_the_data(rng):
    data = random_volume(rng, "int16", shape=(10, 10, 10))
    read_volume(nifti_bytes(data), max_voxels=1000)
    # The header alone (no voxel data follows) is enough to refuse it.
    header_only = nifti_bytes(data, gz=False)[:352]
    with pytest.raises(VolumeTooLargeError, match="1000 voxels"):
        read_volume(header_only, max_voxels=999)


def test_gzip_bomb_declaring_a_huge_volume_is_refused_before_inflating():
    header = nib.Nifti1Header()
    header.set_data_shape((2048, 2048, 2048))  # 8 GiB of uint8 declared
    header.set_data_dtype(np.uint8)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = compressor.compress(header.binaryblock + b"\0" * 4)
    zeros = b"\0" * (1 << 20)
    bomb += b"".join(compressor.compress(zeros) for _ in range(64)) + compressor.flush()
    assert len(bomb) < 200_000
    with pytest.raises(VolumeTooLargeError, match="over the limit"):
        read_volume(bomb, max_volume_bytes=16 << 20)


def test_gzip_bomb_hidden_after_a_small_volume_is_refused():
    raw = nifti_bytes(np.zeros((4, 4, 4), np.int16), gz=False)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    bomb = compressor.compress(raw)
    bomb += b"".join(compressor.compress(zeros) for _ in range(32)) + compressor.flush()
    with pytest.raises(InvalidVolumeError, match="more data than declared"):
        read_volume(bomb, max_volume_bytes=1 << 30)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes_have_one_limit_for_nii_and_nii_gz(rng, gz):
    data = random_volume(rng, "int16")
    raw = nifti_bytes(data, gz=False)
    padded = raw + rng.bytes(MAX_TRAILING_BYTES)
    volume, file = read_volume_file(gzip.compress(padded) if gz else padded)
    np.testing.assert_array_equal(volume.data, data)
    if not gz:
        assert file.nbytes == len(padded)
    # Behind a plain .nii the garbage would be stored byte for byte in a dataset.
    over = raw + rng.bytes(MAX_TRAILING_BYTES + 1)
    with pytest.raises(InvalidVolumeError, match=r"^truth: .*more data than declared"):
        read_volume(gzip.compress(over) if gz else over, label="truth")


@pytest.mark.parametrize(
    ("dtype", "stored", "slope", "inter", "vessel"),
    [
        ("uint8", [0, 0, 1], 1.0, 1.0, [1, 1, 1]),  # zeros that mean ones
        ("int16", [0, 2, 3], 2.0, -4.0, [1, 0, 1]),
        ("float32", [0.5, 0.0, 1.0], -2.0, 1.0, [0, 1, 1]),
        ("uint8", [0, 0, 7], 1.0, 0.0, [0, 0, 1]),
        ("uint8", [0, 0, 7], 0.0, 5.0, [0, 0, 1]),  # slope 0: no scaling
    ],
)
def test_nonzero_intensities_reads_through_the_scaling(dtype, stored, slope, inter, vessel):
    data = np.resize(np.asarray(stored, dtype=dtype), (3, 4, 5))
    payload = bytearray(nifti_bytes(data, gz=False))
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(payload[:348])), check=False)
    header["scl_slope"], header["scl_inter"] = slope, inter  # as written, 0 included
    payload[:348] = header.binaryblock
    volume = read_volume(bytes(payload))
    np.testing.assert_array_equal(nonzero_intensities(volume), np.resize(vessel, (3, 4, 5)))


def test_a_bool_mask_is_written_without_the_volume_scaling(rng):
    stored = np.zeros((3, 4, 5), np.uint8)
    image = nib.Nifti1Image(stored, AFFINE)
    image.header.set_slope_inter(1.0, 1.0)
    volume = read_volume(image.to_bytes())
    mask = nib.Nifti1Image.from_bytes(
        volume_to_bytes(np.ones(volume.shape, bool), volume, gzip=False)
    )
    np.testing.assert_array_equal(mask.get_fdata(), 1.0)


def test_volume_size_limit_counts_the_voxel_bytes(rng):
    payload = nifti_bytes(random_volume(rng, "int16", shape=(10, 10, 10)))
    read_volume(payload, max_volume_bytes=2000)
    with pytest.raises(VolumeTooLargeError, match="VESSELZIP_MAX_VOLUME_BYTES"):
        read_volume(payload, max_volume_bytes=1999)


def test_a_directory_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidVolumeError, match="directory"):
        read_volume(tmp_path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "absent.nii.gz")


def test_volume_to_bytes_is_reproducible_and_readable(rng):
    volume = read_volume(nifti_bytes(random_volume(rng, "uint16")))
    first = volume_to_bytes(volume.data, volume)
    assert first == volume_to_bytes(volume.data, volume)
    assert first[:2] == b"\x1f\x8b"
    raw = volume_to_bytes(volume.data, volume, gzip=False)
    for payload in (first, raw):
        np.testing.assert_array_equal(read_volume(payload).data, volume.data)


def test_writing_checks_shape_dtype_and_name(tmp_path, rng):
    volume = read_volume(nifti_bytes(random_volume(rng, "int16")))
    with pytest.raises(InvalidVolumeError, match="does not match"):
        volume_to_bytes(np.zeros((2, 2, 2), np.int16), volume)
    with pytest.raises(InvalidVolumeError, match="cannot write dtype"):
        volume_to_bytes(np.zeros(volume.shape, np.int64), volume)
    with pytest.raises(InvalidVolumeError, match=r"\.nii"):
        write_volume(tmp_path / "out.png", volume.data, volume)


def test_volume_properties(rng):
    data = random_volume(rng, "float32")
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_zooms((0.5, 0.45, 0.8))
    volume = Volume(data=data, affine=AFFINE, header=header)
    assert volume.shape == (9, 10, 11)
    assert volume.dtype == np.float32
    assert volume.spacing == pytest.approx((0.5, 0.45, 0.8))
