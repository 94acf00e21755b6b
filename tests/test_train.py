"""`vesselzip train` on a tiny dataset with a tiny network: a few iterations, the
published checkpoint format, the log, resuming, and exporting shippable weights; its
options, made from TrainConfig's fields; the progress bar."""

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from vesselzip.cli import build_parser, main
from vesselzip.cli.model_commands import train_config
from vesselzip.model import load_segmenter
from vesselzip.model.checkpoints import export_weights, load_network
from vesselzip.model.inference import InferenceConfig, nifti_scaling, preprocess, ras_grid
from vesselzip.model.network import MambaVesselNet
from vesselzip.model.train import (
    THRESHOLDS,
    TrainConfig,
    TrainingProgress,
    focal_weight,
    load_case,
    split_dataset,
    training_transforms,
)
from vesselzip.phantoms import write_phantom_dataset
from vesselzip.volumes import read_volume

PUBLISHED_KEYS = {"model", "optimizer", "dice_metric", "epoch"}
TINY = ["--feature-dims", "4", "8", "8", "16", "16", "--patch-size", "32"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantoms")
    return write_phantom_dataset(folder, 3, seed=0, shape=(40, 40, 32), spacing=(0.7, 0.7, 0.9))


def train_args(dataset, out, *extra, native=False):
    spacing = ["--native-grid"] if native else ["--target-spacing", "0.8", "0.8", "0.8"]
    return [
        "train",
        "--data",
        str(dataset),
        "--out",
        str(out),
        *TINY,
        *spacing,
        "--iterations",
        "4",
        "--batch-size",
        "2",
        "--val-every",
        "2",
        "--val-count",
        "1",
        "--threads",
        "2",
        "--quiet",
        *extra,
    ]


def test_train_stop_and_resume(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(dataset, out, "--stop-after", "3")) == 0
    first = torch.load(out / "last.pt", weights_only=True)
    assert PUBLISHED_KEYS <= set(first)
    assert first["iteration"] == 3 and first["epoch"] == 3
    assert (out / "best.pt").is_file()  # validated at iteration 2

    assert main(train_args(dataset, out, "--resume")) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.rfind("{\n") :])
    assert summary["resumed_from"] == 3 and summary["iterations"] == 4
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["iteration"] == 4
    # The schedule carried on from iteration 3: cosine annealing ends at the minimum.
    assert last["scheduler"]["last_epoch"] == 4
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-7)
    assert last["config"]["network"]["feature_dims"] == [4, 8, 8, 16, 16]
    assert last["config"]["inference"]["roi_size"] == 32

    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start"
    validated = [entry["iteration"] for entry in log if "val_dice" in entry]
    assert validated == [2, 4]
    assert all(0.0 <= entry["val_dice"] <= 1.0 for entry in log if "val_dice" in entry)
    for entry in (e for e in log if "val_dice" in e):
        # The chosen threshold scores at least as well as 0.5, which is argmax.
        assert entry["val_threshold"] in THRESHOLDS
        assert entry["val_threshold_dice"] >= entry["val_dice"] - 1e-3


def test_best_checkpoint_loads_as_network_and_segmenter(dataset, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(dataset, out, "--iterations", "2", "--probability-sigma", "0.5")) == 0
    best = out / "best.pt"
    network = load_network(best)
    assert network.feature_dims == (4, 8, 8, 16, 16)

    segmenter = load_segmenter("mvn-checkpoint", checkpoint=best, device="cpu")
    assert segmenter.config.target_spacing == (0.8, 0.8, 0.8)
    listing = json.loads(dataset.read_text())
    volume = read_volume(dataset.parent / listing["training"][0]["image"])
    mask = segmenter.segment(volume)
    assert mask.shape == volume.shape

    shipped = export_weights(best, tmp_path / "weights" / "small.pt")
    saved = torch.load(shipped, weights_only=True)
    assert PUBLISHED_KEYS <= set(saved)
    assert all(t.dtype == torch.float16 for t in saved["model"].values() if t.is_floating_point())
    card = json.loads(shipped.with_suffix(".json").read_text())
    assert card["feature_dims"] == [4, 8, 8, 16, 16]
    # The threshold chosen on validation travels with the weights to inference.
    chosen = torch.load(best, weights_only=True)["config"]["inference"]["vessel_threshold"]
    assert chosen in THRESHOLDS and card["inference"]["vessel_threshold"] == chosen
    assert card["inference"]["target_spacing"] == [0.8, 0.8, 0.8]
    again = load_segmenter("mvn-checkpoint", checkpoint=shipped, device="cpu")
    assert next(again.network.parameters()).dtype == torch.float32
    assert again.config.vessel_threshold == chosen
    # So does the smoothing the threshold was chosen with.
    assert card["inference"]["probability_sigma"] == 0.5 == again.config.probability_sigma


def test_no_calibrate_keeps_argmax(dataset, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(dataset, out, "--iterations", "2", "--no-calibrate")) == 0
    saved = torch.load(out / "best.pt", weights_only=True)
    assert saved["config"]["inference"]["vessel_threshold"] is None
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    validated = [entry for entry in log if "val_dice" in entry]
    # The checkpoint is chosen on the argmax Dice.
    assert saved["dice_metric"] == pytest.approx(validated[-1]["val_dice"])


def test_init_starts_from_given_weights_on_the_native_grid(dataset, tmp_path, capsys):
    torch.manual_seed(5)
    start = MambaVesselNet(feature_dims=(4, 8, 8, 16, 16))
    init = tmp_path / "start.pt"
    torch.save({"model": start.state_dict()}, init)
    out = tmp_path / "run"
    extra = ["--init", str(init), "--window-percentiles", "0", "99.5"]
    args = train_args(dataset, out, "--iterations", "1", "--lr", "1e-12", *extra, native=True)
    assert main(args) == 0
    trained = torch.load(out / "last.pt", weights_only=True)["model"]
    # One step at a vanishing learning rate: the weights are still the initial ones.
    for name, tensor in start.state_dict().items():
        torch.testing.assert_close(trained[name], tensor, atol=1e-6, rtol=0)
    inference = torch.load(out / "last.pt", weights_only=True)["config"]["inference"]
    assert inference["target_spacing"] is None
    assert inference["window_percentiles"] == [0.0, 99.5]

    # Weights of another size are refused with a clear message, not a traceback.
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": MambaVesselNet(feature_dims=(4, 8, 8, 16, 32)).state_dict()}, wrong)
    assert main(train_args(dataset, tmp_path / "w", "--init", str(wrong))) == 2
    assert "does not fit feature_dims" in capsys.readouterr().err
    assert main(train_args(dataset, tmp_path / "m", "--init", str(tmp_path / "no.pt"))) == 2
    assert "initial checkpoint not found" in capsys.readouterr().err
    assert (
        main([*train_args(dataset, tmp_path / "n", native=True), "--target-spacing", *"111"]) == 2
    )
    assert "not both" in capsys.readouterr().err


def test_focal_weight_ramps_linearly_until_the_switch_ratio(tmp_path):
    config = TrainConfig(data=tmp_path / "d.json", out=tmp_path, iterations=100, switch_ratio=0.4)
    assert focal_weight(0, config) == 0.0
    assert focal_weight(20, config) == pytest.approx(0.5)
    assert focal_weight(40, config) == 1.0
    assert focal_weight(99, config) == 1.0
    config.final_focal_weight = 0.5  # DiceCE keeps half of the loss
    assert focal_weight(99, config) == 0.5


def test_bad_settings_are_refused(tmp_path, dataset, capsys):
    assert main(["train", "--data", str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 2
    assert "dataset file not found" in capsys.readouterr().err
    assert main(train_args(dataset, tmp_path / "x", "--patch-size", "40")) == 2
    assert "multiple of 16" in capsys.readouterr().err
    assert main(train_args(dataset, tmp_path / "x", "--zoom-prob", "1.5")) == 2
    assert "zoom probability must be between 0 and 1" in capsys.readouterr().err


def test_zoom_share_is_configurable(tmp_path):
    def zooms(config):
        return [
            t for t in training_transforms(config).transforms if type(t).__name__ == "RandZoomd"
        ]

    (default,) = zooms(TrainConfig(data=tmp_path / "d.json", out=tmp_path))
    assert default.prob == pytest.approx(0.3)
    (off,) = zooms(TrainConfig(data=tmp_path / "d.json", out=tmp_path, zoom_prob=0.0))
    assert off.prob == 0.0


def test_validation_volumes_from_another_dataset(dataset, tmp_path, capsys):
    held_out = write_phantom_dataset(
        tmp_path / "held_out", 2, seed=50, shape=(40, 40, 32), spacing=(0.7, 0.7, 0.9)
    )
    out = tmp_path / "run"
    args = train_args(dataset, out, "--iterations", "2", "--val-data", str(held_out))
    assert main(args) == 0
    start = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert start["config"]["val_data"] == str(held_out)
    # All three volumes train; the two others validate.
    training, validation = split_dataset(TrainConfig(dataset, out, val_data=held_out))
    assert len(training) == 3 and len(validation) == 2
    assert all(item["image"].startswith(str(held_out.parent)) for item in validation)

    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"training": []}))
    assert main(train_args(dataset, tmp_path / "e", "--val-data", str(empty))) == 2
    assert "lists no volumes" in capsys.readouterr().err
    assert main(train_args(empty, tmp_path / "f")) == 2
    assert "lists no training volumes" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(train_args(dataset, tmp_path / "g", "--val-data", str(broken))) == 2
    assert "not a usable dataset.json" in capsys.readouterr().err


# --- Options: one per TrainConfig field --------------------------------------------

#: `vesselzip train` options that are not TrainConfig fields.
NOT_FIELDS = {"help", "native_grid", "threads"}
#: Every option `vesselzip train` had before they were made from TrainConfig.
OPTIONS = (
    "--data --out --feature-dims --iterations --batch-size --patch-size --lr --min-lr "
    "--weight-decay --switch-ratio --final-focal-weight --val-every --val-count --val-data "
    "--target-spacing --native-grid --window --window-percentiles --overlap --init "
    "--no-calibrate --no-augment --zoom-prob --resume --stop-after --seed --device "
    "--num-workers --threads --quiet"
).split()


def train_parser() -> argparse.ArgumentParser:
    (subparsers,) = [
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ]
    return subparsers.choices["train"]


def parse_train(*args: str) -> TrainConfig:
    return train_config(build_parser().parse_args(["train", *args]))


def test_every_train_config_field_is_an_option_and_back():
    fields = {f.name for f in dataclasses.fields(TrainConfig) if f.init}
    options = {action.dest for action in train_parser()._actions}
    assert fields - options == set(), "TrainConfig fields without a `vesselzip train` option"
    assert options - fields == NOT_FIELDS, "options that are neither fields nor known extras"
    for item in dataclasses.fields(TrainConfig):
        assert not item.init or item.metadata.get("help"), f"{item.name} has no help"


def test_option_names_are_kept():
    flags = {flag for action in train_parser()._actions for flag in action.option_strings}
    assert set(OPTIONS) <= flags


def test_options_left_out_take_train_config_defaults(tmp_path):
    given = parse_train("--data", "d.json", "--out", str(tmp_path))
    assert given == TrainConfig(data=Path("d.json"), out=tmp_path)
    assert given.feature_dims == (8, 16, 32, 64, 128) and given.iterations == 5000
    assert given.target_spacing == (0.3542,) * 3 and given.window == (0.0, 1000.0)
    assert given.augment and given.calibrate_threshold and given.progress and not given.resume
    assert given.zoom_prob == 0.3 and given.log_every == 10 and given.device == "auto"


def test_options_reach_the_config(tmp_path):
    init = tmp_path / "init.pt"
    init.write_bytes(b"")
    config = parse_train(
        *("--data", "d.json", "--out", "o", "--feature-dims", "16", "32", "64", "64", "64"),
        *("--iterations", "7", "--batch-size", "2", "--patch-size", "48", "--lr", "3e-4"),
        *("--min-lr", "1e-6", "--weight-decay", "0", "--switch-ratio", "0.5"),
        *("--final-focal-weight", "0.5", "--val-every", "3", "--val-count", "2"),
        *("--val-data", "v.json", "--native-grid", "--window-percentiles", "0", "99.9"),
        *("--overlap", "0.5", "--init", str(init), "--no-calibrate", "--no-augment"),
        *("--zoom-prob", "0", "--resume", "--stop-after", "5", "--seed", "3"),
        *("--device", "cpu", "--num-workers", "1", "--log-every", "2", "--quiet"),
    )
    assert config == TrainConfig(
        data=Path("d.json"),
        out=Path("o"),
        feature_dims=(16, 32, 64, 64, 64),
        iterations=7,
        batch_size=2,
        patch_size=48,
        lr=3e-4,
        min_lr=1e-6,
        weight_decay=0.0,
        switch_ratio=0.5,
        final_focal_weight=0.5,
        val_every=3,
        val_count=2,
        val_data=Path("v.json"),
        target_spacing=None,
        window_percentiles=(0.0, 99.9),
        overlap=0.5,
        init=init,
        calibrate_threshold=False,
        augment=False,
        zoom_prob=0.0,
        resume=True,
        stop_after=5,
        seed=3,
        device="cpu",
        num_workers=1,
        log_every=2,
        progress=False,
    )
    spaced = parse_train("--data", "d", "--out", "o", "--target-spacing", "0.5", "0.5", "0.8")
    assert spaced.target_spacing == (0.5, 0.5, 0.8) and spaced.window == (0.0, 1000.0)
    assert parse_train("--data", "d", "--out", "o", "--window", "10", "90").window == (10.0, 90.0)


def test_option_counts_and_choices_are_checked(capsys):
    for wrong in (["--feature-dims", "4", "8"], ["--window", "1"], ["--device", "tpu"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "--data", "d", "--out", "o", *wrong])
    capsys.readouterr()


def test_progress_bar_is_rich_on_stderr(tmp_path, capsys):
    config = TrainConfig(data=tmp_path / "d.json", out=tmp_path, iterations=10)
    with TrainingProgress(config, start=2) as bar:
        bar.advance()
        bar.show(loss=0.25, best=-1.0)
        bar.show(dice=0.5)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        "3/10" in captured.err and "loss 0.2500" in captured.err and "dice 0.5000" in captured.err
    )
    quiet = TrainConfig(data=tmp_path / "d.json", out=tmp_path, progress=False)
    with TrainingProgress(quiet, start=0) as bar:
        bar.advance()
    assert capsys.readouterr().err == ""


def test_tissue_window_and_cleanup_are_trained_with_and_stored(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    extra = ["--iterations", "1", "--tissue-window", "4", "--clear-air"]
    args = train_args(dataset, out, *extra, "--min-piece-voxels", "20", native=True)
    assert main(args) == 0
    inference = torch.load(out / "last.pt", weights_only=True)["config"]["inference"]
    assert inference["tissue_window"] == 4.0 and inference["window_percentiles"] is None
    assert inference["clear_air"] is True and inference["min_piece_voxels"] == 20
    both = ["--window-percentiles", "0", "99.9", "--tissue-window", "4"]
    assert main(train_args(dataset, tmp_path / "both", *both)) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize("normalisation", [{"tissue_window": 4.0}, {"window": (0.0, 800.0)}])
def test_training_volumes_are_preprocessed_as_at_inference(dataset, normalisation):
    config = InferenceConfig(target_spacing=(0.8, 0.8, 0.8), **normalisation)
    listing = json.loads(dataset.read_text())["training"][0]
    image_path = str(dataset.parent / listing["image"])
    case = load_case(image_path, str(dataset.parent / listing["label"]), config)
    volume = read_volume(image_path)
    grid = ras_grid(volume.shape, volume.affine)
    cpu = torch.device("cpu")
    expected = preprocess(volume.data, grid, config, cpu, scaling=nifti_scaling(volume.header))
    torch.testing.assert_close(case["image"].clamp(0.0, 1.0), expected[0])


def test_another_label_set_can_be_the_truth_learned(dataset, tmp_path, capsys):
    # A second label set beside `label`, as whole heads list `vessels`; its paths are
    # relative to the dataset.json, as the generator writes them.
    entries = json.loads(dataset.read_text())
    (dataset.parent / "vesselsTr").mkdir(exist_ok=True)
    for entry in entries["training"]:
        entry["vessels"] = entry["label"].replace("labelsTr", "vesselsTr")
        (dataset.parent / entry["vessels"]).write_bytes(
            (dataset.parent / entry["label"]).read_bytes()
        )
    with_vessels = dataset.parent / "with_vessels.json"
    with_vessels.write_text(json.dumps(entries))
    training, validation = split_dataset(
        TrainConfig(with_vessels, tmp_path / "run", label_key="vessels")
    )
    for item in training + validation:
        assert Path(item["vessels"]).is_file() and "vesselsTr" in item["vessels"]
    assert parse_train("--data", "d.json", "--out", "o", "--label-key", "vessels").label_key == (
        "vessels"
    )
    assert main(train_args(dataset, tmp_path / "r", "--label-key", "vessels")) == 2
    assert "have no 'vessels' truth" in capsys.readouterr().err
