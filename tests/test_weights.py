"""What identifies the weights behind a model name (the key of reusable results)."""

import os
import shutil

from vesselzip import weights
from vesselzip.weights import BUNDLED_CONFIG, BUNDLED_WEIGHTS, model_identity


def test_the_bundled_model_is_identified_by_the_content_of_its_files(tmp_path, monkeypatch):
    bundled = model_identity("mvn-small")
    assert bundled.startswith("mvn-small@") and bundled == model_identity("mvn-small")
    # A copy elsewhere is the same model; a changed copy is not.
    copies = [tmp_path / BUNDLED_WEIGHTS.name, tmp_path / BUNDLED_CONFIG.name]
    for source, copy in zip((BUNDLED_WEIGHTS, BUNDLED_CONFIG), copies, strict=True):
        shutil.copyfile(source, copy)
    monkeypatch.setattr(weights, "BUNDLED_WEIGHTS", copies[0])
    monkeypatch.setattr(weights, "BUNDLED_CONFIG", copies[1])
    assert model_identity("mvn-small") == bundled
    copies[1].write_text(copies[1].read_text().replace('"vessel_threshold"', '"old_key"'))
    assert model_identity("mvn-small") != bundled


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
