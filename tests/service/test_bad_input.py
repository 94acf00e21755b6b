"""Hostile and malformed uploads: each gets a clear 4xx and leaves nothing behind
(no blob, truth or temp file in the store, no job in Redis)."""

from __future__ import annotations

import gzip
import io

import httpx
import nibabel as nib
import numpy as np
import pytest


def nifti(data: np.ndarray, *, version: int = 1, compress: bool = True) -> bytes:
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    raw = cls(data, np.eye(4)).to_bytes()
    return gzip.compress(raw) if compress else raw


def gzip_bomb() -> bytes:
    """A valid 8x8x8 header and voxels followed by 200 MB of zeros (~200 kB gzipped)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as stream:
        stream.write(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)).to_bytes())
        zeros = bytes(1024 * 1024)
        for _ in range(200):
            stream.write(zeros)
    return out.getvalue()


def declared_huge() -> bytes:
    """A header declaring 4096^3 voxels, with almost no data behind it."""
    header = nib.Nifti1Header()
    header.set_data_shape((4096, 4096, 4096))
    header.set_data_dtype(np.int16)
    return gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 1024)


GOOD = nifti(np.full((16, 16, 12), 100, np.int16))
NAN = np.zeros((16, 16, 12), np.float32)
NAN[3, 4, 5] = np.nan
INF = np.zeros((16, 16, 12), np.float32)
INF[1, 1, 1] = np.inf

BAD_IMAGES = {
    "random bytes": (b"\x1f\x8b" + bytes(range(256)) * 8, 422),
    "plain text": (b"this is not a volume\n" * 100, 422),
    "empty file": (b"", 422),
    "truncated gzip": (GOOD[: len(GOOD) // 2], 422),
    "truncated data": (nifti(np.ones((16, 16, 12), np.int16), compress=False)[:500], 422),
    "4D volume": (nifti(np.zeros((8, 8, 8, 2), np.int16)), 422),
    "2D image": (nifti(np.zeros((16, 16), np.int16)), 422),
    "empty volume": (nifti(np.zeros((0, 8, 8), np.int16)), 422),
    "NaN voxel": (nifti(NAN), 422),
    "Inf voxel": (nifti(INF), 422),
    "complex voxels": (nifti(np.zeros((8, 8, 8), np.complex64)), 422),
    "NIfTI-2": (nifti(np.zeros((8, 8, 8), np.int16), version=2), 422),
    "too many voxels": (nifti(np.zeros((65, 64, 64), np.int16)), 413),
    "declared huge": (declared_huge(), 413),
    "gzip bomb": (gzip_bomb(), 422),
}


@pytest.fixture
def nothing_stored(service):
    """Asserts after the test that the store and Redis hold no more than before."""
    files, keys = service.stored_files(), service.job_keys()
    yield
    assert service.stored_files() == files
    assert service.job_keys() == keys
    assert service.spooled_files() == []


def post(service, files, **form) -> httpx.Response:
    return httpx.post(f"{service.base_url}/v1/jobs", files=files, data=form, timeout=60)


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_is_refused(service, nothing_stored, case):
    content, status = BAD_IMAGES[case]
    response = post(service, {"image": ("volume.nii.gz", content)})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.startswith("image (volume.nii.gz)")
    assert str(service.store_dir) not in detail  # no server paths in messages


@pytest.mark.parametrize(
    "truth, expected",
    [
        (nifti(np.zeros((16, 16, 8), np.uint8)), "does not match image shape"),
        (b"not a mask", "truth"),
        (nifti(np.zeros((8, 8, 8, 2), np.uint8)), "truth"),
    ],
)
def test_bad_truth_is_refused(service, nothing_stored, truth, expected):
    response = post(service, {"image": ("a.nii.gz", GOOD), "truth": ("t.nii.gz", truth)})
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]


@pytest.mark.parametrize(
    "form, expected",
    [
        ({"codec": "gzip"}, "unknown codec"),
        ({"codec": "zfp:rate=-1"}, "rate"),
        ({"codec": "zfp:speed=3"}, "speed"),
        ({"codec": "zfp", "mode": "fastest", "value": "1"}, "fastest"),
        ({"codec": "zfp", "value": "2"}, "needs a mode"),
        ({"codec": "zfp:rate=2", "mode": "rate"}, "not both"),
        ({"codec": "zfp", "mode": "tolerance", "value": "-5"}, "tolerance"),
        ({"model": "resnet-9000"}, "unknown model"),
    ],
)
def test_bad_settings_are_refused(service, nothing_stored, form, expected):
    response = post(service, {"image": ("a.nii.gz", GOOD)}, **form)
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]


def test_bad_form_fields_are_refused(service, nothing_stored):
    assert post(service, {"truth": ("t.nii.gz", GOOD)}).status_code == 422  # no image
    response = post(service, {"image": ("a.nii.gz", GOOD)}, queue="tpu")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "queue"]


def test_body_over_the_upload_limit_is_refused_while_streaming(service, nothing_stored):
    limit = 4 * 1024**2  # VESSELZIP_MAX_UPLOAD_BYTES in the test settings
    big = bytes(limit + 1)
    response = post(service, {"image": ("big.nii", big)})
    assert response.status_code == 413
    assert "upload limit" in response.json()["detail"]

    # Without a Content-Length (chunked), the limit still holds mid-stream.
    def chunks():
        boundary_start = (
            b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.nii"\r\n\r\n'
        )
        yield boundary_start
        for _ in range(limit // 65536 + 2):
            yield bytes(65536)
        yield b"\r\n--b--\r\n"

    response = httpx.post(
        f"{service.base_url}/v1/jobs",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=b"},
        timeout=60,
    )
    assert response.status_code == 413
    assert "upload limit" in response.json()["detail"]
