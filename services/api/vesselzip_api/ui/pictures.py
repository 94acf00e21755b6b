"""A finished job's pictures (vesselzip.pictures), drawn once from what the store holds
and kept beside the job's other files (pictures/<job id>/, deleted with the job)."""

from __future__ import annotations

from typing import Any

from vesselzip.container import decode_volume
from vesselzip.errors import NotFoundError
from vesselzip.jobs import JobResult, blob_key, pictures_prefix
from vesselzip.pictures import PICTURES, VIEWS, difference_picture, mask_picture
from vesselzip.store import BlobStore
from vesselzip.volumes import read_volume


def picture_key(job_id: str, name: str) -> str:
    return f"{pictures_prefix(job_id)}/{name}.png"


def _facts_key(job_id: str) -> str:
    return f"{pictures_prefix(job_id)}/pictures.json"


def picture_facts(store: BlobStore, result: JobResult) -> dict[str, Any]:
    """Draw the job's pictures unless they are stored; what they show: `difference`
    (whether the original was at hand), `largest_difference`."""
    try:
        return store.get_json(_facts_key(result.job_id))
    except NotFoundError:
        pass
    if result.mask_key is None or result.blob_key is None:
        raise NotFoundError(f"job {result.job_id} has no mask to draw")
    decoded = decode_volume(store.get_bytes(result.blob_key))
    mask = read_volume(store.get_bytes(result.mask_key)).data
    truth = read_volume(store.get_bytes(result.truth_key)).data if result.truth_key else None
    original = _original(store, result)
    facts: dict[str, Any] = {"difference": original is not None, "largest_difference": None}
    for view in VIEWS:
        store.put_bytes(
            picture_key(result.job_id, f"mask_{view}"),
            mask_picture(decoded.data, mask, truth, view, decoded.spacing),
        )
        if original is not None:
            png, largest = difference_picture(original, decoded.data, view, decoded.spacing)
            store.put_bytes(picture_key(result.job_id, f"difference_{view}"), png)
            facts["largest_difference"] = largest
    store.put_json(_facts_key(result.job_id), facts)  # last: the pictures are complete
    return facts


def picture_png(store: BlobStore, result: JobResult, name: str) -> bytes:
    if name not in PICTURES:
        raise NotFoundError(f"no picture {name!r}; pictures: {', '.join(PICTURES)}")
    facts = picture_facts(store, result)
    if name.startswith("difference") and not facts["difference"]:
        raise NotFoundError(
            "the original of an upload is not kept; post it with agreement=true to keep it"
        )
    return store.get_bytes(picture_key(result.job_id, name))


def _original(store: BlobStore, result: JobResult):
    """The original voxels: a dataset job's stored image, or the uncompressed blob of an
    upload's reference job; None when neither is there."""
    try:
        if result.source_key:
            return read_volume(store.get_bytes(result.source_key)).data
        if result.reference_job_id:
            return decode_volume(store.get_bytes(blob_key(result.reference_job_id))).data
    except NotFoundError:
        return None
    return None
