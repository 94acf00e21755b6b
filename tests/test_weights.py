"""What identifies the weights behind a model name (the key of reusable results)."""

import os
import shutil

from vesselzip import weights
from vesselzip.weights import BUNDLED_MODELS, bundled_files, model_identity


def test_the_bundled_model_is_identified_by_the_content_of_its_files(tmp_path, monkeypatch):
    bundled = model_identity("mvn-vessels")
    assert bundled.startswith("mvn-vessels@") and bundled == model_identity("mvn-vessels")
    assert model_identity("mvn-small") == bundled  # its earlier name: the same model
    # Each bundled model is its own.
    identities = {model_identity(name) for name in BUNDLED_MODELS}
    assert len(identities) == len(BUNDLED_MODELS)
    # A copy elsewhere is the same model; a changed copy is not.
    sources = bundled_files("mvn-vessels")
    copies = [tmp_path / source.name for source in sources]
    for source, copy in zip(sources, copies, strict=True):
        shutil.copyfile(source, copy)
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    assert model_identity("mvn-vessels") == bundled
    copies[1].write_text(copies[1].read_text().replace('"vessel_threshold"', '"old_key"'))
    assert model_identity("mvn-vessels") != bundled


def test_a_checkpoint_is_identified_by_its_path_size_and_time(tmp_path):
    assert model_identity("frangi") == "frangi"  # no weights
    assert model_identity("mvn-checkpoint") == "mvn-checkpoint"  # none configured
    checkpoint = tmp_path / "model.pt"
    missing = model_identity("mvn-checkpoint", checkpoint)
    checkpoint.write_bytes(b"first weights")
    first = model_identity("mvn-checkpoint", checkpoint)
    assert first.startswith("mvn-checkpoint@") and first != missing
    assert model_identity("mvn-checkpoint", str(checkpoint)) == first
    checkpoint.write_bytes(b"other weights")  # same size: the time tells them apart
    later = checkpoint.stat().st_mtime_ns + 10**9
    os.utime(checkpoint, ns=(later, later))
    assert model_identity("mvn-checkpoint", checkpoint) != first
    assert model_identity("mvn-checkpoint", tmp_path / "elsewhere.pt") != missing
