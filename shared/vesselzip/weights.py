"""Where the bundled weights live, and what identifies the weights behind a model name.

Torch-free on purpose: the gateway uses `model_identity` to key the results it may
reuse (a sweep's jobs), so that results made with other weights under the same model
name are never served again after the weights change.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "model" / "weights"
#: The bundled models by name, and the stem of their files in WEIGHTS_DIR (weights in
#: STEM.pt, inference settings and training record in STEM.json; MODEL_CARD.md has both).
BUNDLED_MODELS = {"mvn-arteries": "mvn_arteries", "mvn-vessels": "mvn_vessels"}
#: The names the bundled models had before they were named by the truth they answer;
#: still accepted everywhere a model name is.
MODEL_ALIASES = {"mvn-small-heads": "mvn-arteries", "mvn-small": "mvn-vessels"}
#: The truth each model's mask answers: the named arteries of the Circle of Willis and
#: their main branches (as the paper's RSNA labels and TopCoW's are drawn), or every
#: visible vessel (as IXI's and VesselVerse's are).
NAMED_ARTERIES, EVERY_VESSEL = "named arteries", "every vessel"
MODEL_ANSWERS = {
    "mvn-arteries": NAMED_ARTERIES,
    "mvn-vessels": EVERY_VESSEL,
    "mvn-checkpoint": NAMED_ARTERIES,  # the paper's model, trained on RSNA's labels
    "frangi": EVERY_VESSEL,
}


def model_name(name: str) -> str:
    """The model's name, an earlier name resolved (`MODEL_ALIASES`)."""
    return MODEL_ALIASES.get(name, name)


def bundled_files(model: str) -> tuple[Path, Path]:
    """The weights and the settings file of the bundled model called `model`."""
    stem = WEIGHTS_DIR / BUNDLED_MODELS[model_name(model)]
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def model_identity(model: str, checkpoint: str | Path | None = None) -> str:
    """`model`, plus "@" and a short fingerprint of its weights where it has any:
    the bundled files' SHA-256 for a bundled model; for mvn-checkpoint the checkpoint's
    path, size and modification time (cheap even for the paper's 600 MB file; a
    missing file counts by its path). Frangi has no weights: its name is enough."""
    model = model_name(model)
    if model in BUNDLED_MODELS:
        files = bundled_files(model)
        return f"{model}@{_content_digest(tuple((f, *_stat(f)) for f in files))}"
    if model == "mvn-checkpoint" and checkpoint is not None:
        path = Path(checkpoint).expanduser().resolve()
        described = "\0".join(map(str, (path, *_stat(path))))
        return f"{model}@{hashlib.sha256(described.encode()).hexdigest()[:16]}"
    return model


def _stat(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except OSError:
        return -1, -1
    return status.st_size, status.st_mtime_ns


@lru_cache(maxsize=8)
def _content_digest(files: tuple[tuple[Path, int, int], ...]) -> str:
    """SHA-256 of the files' bytes; the sizes and times in the key make a changed
    file hash again."""
    digest = hashlib.sha256()
    for path, size, _ in files:
        digest.update(path.read_bytes() if size >= 0 else b"missing")
        digest.update(b"\0")
    return digest.hexdigest()[:16]
