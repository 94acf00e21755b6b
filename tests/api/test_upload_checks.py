"""What the gateway makes of an upload's content: truths read through their intensity
scaling, a file's trailing bytes (in-process, no worker)."""

from __future__ import annotations

import numpy as np

from tests.service.hostile import BY_ID, GOOD, SHAPE, nifti
from vesselzip.datasets import load_dataset
from vesselzip.jobs import truth_key
from vesselzip.store import open_store
from vesselzip.volumes import read_volume

# Stored zeros with scl_slope 1, scl_inter 1: every voxel's intensity is 1, all vessel.
SCALED_ZEROS = nifti(np.zeros(SHAPE, np.uint8), raw_fields={"scl_slope": 1, "scl_inter": 1})


def test_a_job_truth_is_read_through_its_scaling(client, settings):
    answer = client.post(
        "/v1/jobs",
        files={"image": ("a.nii.gz", GOOD), "truth": ("t.nii.gz", SCALED_ZEROS)},
        data={"queue": "gpu"},
    )
    assert answer.status_code == 202, answer.text
    stored = open_store(settings.store_dir).get_bytes(truth_key(answer.json()["id"]))
    truth = read_volume(stored)
    assert truth.dtype == np.uint8 and np.all(truth.data == 1)
    assert truth.header.get_slope_inter() == (1.0, 0.0)  # a plain 0/1 mask


def test_a_dataset_truth_is_read_through_its_scaling(client, settings):
    answer = client.post(
        "/v1/datasets",
        files=[("images", ("a.nii.gz", GOOD)), ("truths", ("t.nii.gz", SCALED_ZEROS))],
    )
    assert answer.status_code == 201, answer.text
    store = open_store(settings.store_dir)
    (volume,) = load_dataset(store, answer.json()["id"]).volumes
    assert volume.truth_key is not None
    truth = read_volume(store.get_bytes(volume.truth_key))
    assert np.all(truth.data == 1)


def test_a_plain_nii_with_a_trailer_is_refused_as_a_dataset_volume(client, settings):
    datasets = set((settings.store_dir / "datasets").glob("*"))
    case = BY_ID["nii-trailer"]
    answer = client.post("/v1/datasets", files=[("images", ("big.nii", case.build()))])
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("image (big.nii): the file holds far more data")
    assert set((settings.store_dir / "datasets").glob("*")) == datasets


def test_every_codec_compresses_an_upload_and_the_blob_decodes(client, settings):
    from vesselzip.container import decode_volume
    from vesselzip.jobs import blob_key

    original = read_volume(GOOD)
    specs = ["sz3:tolerance=20", "sperr:rate=2", "lerc:tolerance=5", "jpegls:near=2",
             "jpeg2000:psnr=40", "htj2k:lossless", "zstd", "blosc2"]  # fmt: skip
    for spec in specs:
        answer = client.post(
            "/v1/jobs", files={"image": ("a.nii.gz", GOOD)}, data={"codec": spec, "queue": "gpu"}
        )
        assert answer.status_code == 202, (spec, answer.text)
        job = answer.json()
        blob = open_store(settings.store_dir).get_bytes(blob_key(job["id"]))
        decoded = decode_volume(blob)
        assert decoded.shape == original.shape and decoded.dtype == original.dtype
        compression = client.get(f"/v1/jobs/{job['id']}").json()["compression"]
        assert compression["cr_raw"] > 0 and compression["codec"].startswith(spec.split(":")[0])


def test_a_codec_that_cannot_take_the_volume_is_a_422(client):
    floats = nifti(np.random.default_rng(0).normal(size=SHAPE).astype(np.float32))
    answer = client.post(
        "/v1/jobs", files={"image": ("f.nii.gz", floats)}, data={"codec": "jpegls:near=1"}
    )
    assert answer.status_code == 422
    assert "jpegls codes integer volumes" in answer.json()["detail"]
