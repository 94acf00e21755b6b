"""`vesselzip compress`, `decompress` and `inspect` on real files."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from vesselzip.cli import main

AFFINE = np.diag([0.5, 0.5, 0.8, 1.0])


@pytest.fixture
def image_path(tmp_path, rng):
    z, y, x = np.meshgrid(*(np.arange(n) for n in (24, 20, 16)), indexing="ij")
    data = 300 + 200 * np.sin(z / 4) * np.cos(x / 3) + 10 * rng.standard_normal(z.shape)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.int16), AFFINE), path)
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_compress_inspect_decompress_round_trip(tmp_path, capsys, image_path):
    blob = tmp_path / "scan.vz"
    status, out, err = run(capsys, "compress", image_path, blob, "--spec", "zfp:tolerance=20")
    assert status == 0, err
    assert "zfp tolerance=20" in out and "vs raw" in out and "vs the input file" in out
    assert blob.stat().st_size > 0

    status, out, _ = run(capsys, "inspect", blob)
    assert status == 0
    assert "checksums OK" in out and "24x20x16 int16" in out

    back = tmp_path / "back.nii.gz"
    status, out, _ = run(capsys, "decompress", blob, back)
    assert status == 0 and "decompress" in out
    original = nib.load(image_path)
    decoded = nib.load(back)
    np.testing.assert_array_equal(decoded.affine, original.affine)
    assert decoded.get_data_dtype() == np.int16
    error = np.abs(np.asanyarray(decoded.dataobj).astype(int) - np.asanyarray(original.dataobj))
    assert error.max() <= 20


def test_json_outputs(tmp_path, capsys, image_path):
    blob = tmp_path / "scan.vz"
    status, out, _ = run(
        capsys, "compress", image_path, blob, "--mode", "rate", "--value", "4", "--json"
    )
    assert status == 0
    report = json.loads(out)
    raw_nbytes = 24 * 20 * 16 * 2
    assert report["blob"]["codec"] == {"id": "zfp", "mode": "rate", "value": 4}
    assert report["blob"]["raw_nbytes"] == raw_nbytes
    assert report["blob"]["blob_nbytes"] == blob.stat().st_size
    assert report["input_nbytes"] == image_path.stat().st_size
    assert report["cr_input_file"] == pytest.approx(image_path.stat().st_size / blob.stat().st_size)
    assert report["compress_s"] >= 0

    status, out, _ = run(capsys, "inspect", blob, "--json")
    info = json.loads(out)
    assert info["shape"] == [24, 20, 16] and info["dtype"] == "int16"
    assert info["compression_ratio"] == pytest.approx(raw_nbytes / blob.stat().st_size)

    status, out, _ = run(capsys, "decompress", blob, tmp_path / "back.nii", "--json")
    report = json.loads(out)
    assert report["shape"] == [24, 20, 16]
    assert report["output_nbytes"] == (tmp_path / "back.nii").stat().st_size


def test_metrics_are_reported_on_request(tmp_path, capsys, image_path):
    status, out, _ = run(
        capsys, "compress", image_path, tmp_path / "a.vz", "--spec", "zfp:reversible", "--metrics"
    )
    assert status == 0 and "max |error| 0" in out
    status, out, _ = run(
        capsys,
        "compress",
        image_path,
        tmp_path / "b.vz",
        "--spec",
        "zfp:rate=2",
        "--metrics",
        "--json",
    )
    metrics = json.loads(out)["metrics"]
    assert metrics["max_abs_error"] > 0
    assert metrics["cr_nifti_gz"] == pytest.approx(
        image_path.stat().st_size / (tmp_path / "b.vz").stat().st_size
    )


def test_default_codec_is_lossless(tmp_path, capsys, image_path):
    status, out, _ = run(capsys, "compress", image_path, tmp_path / "a.vz", "--json")
    assert json.loads(out)["blob"]["codec"] == {"id": "zfp", "mode": "reversible"}
    status, out, _ = run(
        capsys, "compress", image_path, tmp_path / "b.vz", "--codec", "none", "--json"
    )
    assert json.loads(out)["blob"]["payload_nbytes"] == 24 * 20 * 16 * 2


def assert_one_line_error(status, err, *fragments):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_inputs_give_one_line_errors(tmp_path, capsys, image_path):
    blob = tmp_path / "scan.vz"
    cases = [
        (("compress", tmp_path, blob), "directory"),
        (("compress", tmp_path / "absent.nii.gz", blob), "no such file"),
        (("compress", image_path, tmp_path / "no" / "dir" / "x.vz"), "cannot write"),
        (("compress", image_path, blob, "--spec", "zfp:rate=0.1"), "between 0.25 and 64"),
        (("compress", image_path, blob, "--spec", "lz4"), "unknown codec"),
        (("compress", image_path, blob, "--spec", "zfp:rate=2", "--mode", "rate"), "either"),
        (
            ("compress", image_path, blob, "--backend", "pyzfp", "--mode", "rate", "--value", "2"),
            "pyzfp",
        ),
        (("inspect", image_path), "not a vesselzip blob"),
        (("inspect", tmp_path), "directory"),
        (("decompress", image_path, tmp_path / "x.nii.gz"), "not a vesselzip blob"),
    ]
    text = tmp_path / "notes.nii"
    text.write_text("not a volume")
    cases.append((("compress", text, blob), "not a NIfTI"))
    for argv, fragment in cases:
        status, _, err = run(capsys, *argv)
        assert_one_line_error(status, err, fragment)
    assert not blob.exists()


def test_damaged_blob_and_bad_output_name(tmp_path, capsys, image_path):
    blob = tmp_path / "scan.vz"
    run(capsys, "compress", image_path, blob)
    damaged = bytearray(blob.read_bytes())
    damaged[-5] ^= 1
    blob.write_bytes(bytes(damaged))
    status, _, err = run(capsys, "inspect", blob)
    assert_one_line_error(status, err, "checksum")
    run(capsys, "compress", image_path, blob)
    status, _, err = run(capsys, "decompress", blob, tmp_path / "back.png")
    assert_one_line_error(status, err, ".nii")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_gives_one_line(tmp_path, capsys, image_path):
    image_path.chmod(0)
    status, _, err = run(capsys, "compress", image_path, tmp_path / "x.vz")
    assert_one_line_error(status, err, "ermission")


def test_the_installed_command_prints_one_line_and_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vesselzip", "inspect", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"vesselzip inspect: error: cannot read {tmp_path}: Is a directory"
    )
