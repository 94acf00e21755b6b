"""One training dataset from several: each source's volumes with the truth asked of
that source as their `label`, so that a network learns one truth from data whose
files name it differently (a whole head's every-vessel truth is `vessels`, a crop
phantom's or a real-mask render's is `label`)."""

from __future__ import annotations

import json
from pathlib import Path

from vesselzip.errors import VesselzipError


def parse_source(text: str) -> tuple[Path, str]:
    """`DATASET.json` or `DATASET.json:KEY` (the label set to learn; default label)."""
    path, _, key = text.partition(".json:")
    if key:
        return Path(path + ".json"), key
    return Path(text), "label"


def write_mixed_dataset(sources: list[tuple[Path, str]], target: Path, name: str = "") -> Path:
    """Write `target` (a dataset.json) listing every training volume of each source,
    paths made absolute, with the source's chosen label set as `label` (the others
    are kept beside it). Returns `target`."""
    if not sources:
        raise VesselzipError("give at least one source dataset")
    training = []
    for path, key in sources:
        try:
            entries = json.loads(path.read_text()).get("training") or []
        except (OSError, ValueError) as error:
            raise VesselzipError(f"cannot read {path}: {error}") from None
        if not entries:
            raise VesselzipError(f"{path} lists no training volumes")
        for index, entry in enumerate(entries):
            if key not in entry:
                raise VesselzipError(f"{path}: training entry {index} has no {key!r} truth")
            mixed = {
                field: str((path.parent / value).resolve())
                if isinstance(value, str) and ".nii" in value
                else value
                for field, value in entry.items()
            }
            mixed["label"] = mixed[key]
            mixed["mixed_from"] = {"dataset": str(path.resolve()), "truth": key}
            training.append(mixed)
    described = ", ".join(f"{p} ({k})" for p, k in sources)
    dataset = {
        "name": name or "mixed",
        "description": f"the training volumes of {described}, each source's truth as label",
        "numTraining": len(training),
        "training": training,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(dataset, indent=2) + "\n")
    return target
