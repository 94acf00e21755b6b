"""A finished job's pictures (vesselzip.pictures), drawn once from what the store holds
and kept beside the job's other files (pictures/<job id>/, deleted with the job)."""

from __future__ import annotations

from typing import Any

from vesselzip.container import decode_volume
from vesselzip.errors import NotFoundError
from vesselzip.jobs import JobResult, blob_key, difference_key, pictures_prefix
from vesselzip.pictures import (
    PICTURES,
    VIEWS,
    difference_picture,
    difference_projections,
    mask_picture,
    projections_from_bytes,
)
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
    differences = _differences(store, result, decoded.data)
    facts: dict[str, Any] = {"difference": differences is not None, "largest_difference": None}
    for view in VIEWS:
        store.put_bytes(
            picture_key(result.job_id, f"mask_{view}"),
            mask_picture(decoded.data, mask, truth, view, decoded.spacing),
        )
        if differences is not None:
            png, largest = difference_picture(differences[view], view, decoded.spacing)
            store.put_bytes(picture_key(result.job_id, f"difference_{view}"), png)
            facts["largest_difference"] = max(largest, facts["largest_difference"] or 0.0)
    store.put_json(_facts_key(result.job_id), facts)  # last: the pictures are complete
    return facts


def picture_png(store: BlobStore, result: JobResult, name: str) -> bytes:
    if name not in PICTURES:
        raise NotFoundError(f"no picture {name!r}; pictures: {', '.join(PICTURES)}")
    facts = picture_facts(store, result)
    if name.startswith("difference") and not facts["difference"]:
        raise NotFoundError(
            f"job {result.job_id} has no difference picture (made before they were kept)"
        )
    return store.get_bytes(picture_key(result.job_id, name))


def _differences(store: BlobStore, result: JobResult, decoded) -> dict | None:
    """|decoded − original| per view: as written when the job was compressed, else
    from the original when it is still there (a dataset job's image, or an upload's
    reference job's uncompressed blob); None when neither is."""
    try:
        return projections_from_bytes(store.get_bytes(difference_key(result.job_id)))
    except NotFoundError:
        pass
    try:
        if result.source_key:
            original = read_volume(store.get_bytes(result.source_key)).data
        elif result.reference_job_id:
            original = decode_volume(store.get_bytes(blob_key(result.reference_job_id))).data
        else:
            return None
    except NotFoundError:
        return None
    return difference_projections(original, decoded)
