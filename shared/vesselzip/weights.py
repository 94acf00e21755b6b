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
BUNDLED_MODELS = {"mvn-small": "mvn_small", "mvn-small-heads": "mvn_small_heads"}


def bundled_files(model: str) -> tuple[Path, Path]:
    """The weights and the settings file of the bundled model called `model`."""
    stem = WEIGHTS_DIR / BUNDLED_MODELS[model]
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def model_identity(model: str, checkpoint: str | Path | None = None) -> str:
    """`model`, plus "@" and a short fingerprint of its weights where it has any:
    the bundled files' SHA-256 for a bundled model; for mvn-checkpoint the checkpoint's
    path, size and modification time (cheap even for the paper's 600 MB file; a
    missing file counts by its path). Frangi has no weights: its name is enough."""
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
