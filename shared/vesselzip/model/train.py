"""Training MambaVesselNet++ with the paper's protocol (§3.4): Adam with weight decay
1e-5, cosine learning rate 1e-4 -> 1e-7 per iteration, 64^3 patches drawn half on
vessel and half on background, DiceCE moving linearly to Focal loss until 40% of the
iterations, then Focal alone. Validation Dice by sliding window every K iterations;
by default the vessel-probability threshold that gives the best validation Dice is
chosen there too and stored with the weights (see `calibrate_threshold`).

Checkpoints use the published format ({"model", "optimizer", "dice_metric",
"epoch"}) plus what resuming and inference need ("scheduler", "iteration",
"config", ...): `last.pt` after every validation, `best.pt` at the best Dice
(`vesselzip.model.checkpoints` reads and writes them, and exports shippable weights).
A JSON-lines log (`train_log.jsonl`) records losses and validation scores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai import transforms as T
from monai.data import DataLoader, Dataset, load_decathlon_datalist
from monai.losses import DiceCELoss, FocalLoss
from monai.utils import set_determinism
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vesselzip.errors import ModelNotAvailableError, VesselzipError
from vesselzip.model.augment import RandSuppressBackgroundd
from vesselzip.model.inference import (
    InferenceConfig,
    autocast_for,
    nifti_scaling,
    preprocess,
    ras_grid,
    resampled_shape,
    resolve_device,
    sliding_window_logits,
    smoothed,
    vessel_probability,
)

SMALL_FEATURE_DIMS = (8, 16, 32, 64, 128)
#: Vessel-probability thresholds tried on the validation volumes.
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(2, 20))  # 0.10 ... 0.95


@dataclass
class TrainConfig:
    """Everything a training run is given. `vesselzip train` has one option per field:
    ``--kebab-case`` of the name (or ``metadata["flag"]``), typed and counted from the
    annotation, with ``metadata["help"]`` as its help (and optionally "metavar",
    "choices", "nargs"). A new field needs nothing else to become an option."""

    data: Path = field(metadata={"help": "dataset.json (decathlon style)"})
    out: Path = field(metadata={"help": "output directory"})
    feature_dims: tuple[int, ...] = field(
        default=SMALL_FEATURE_DIMS,
        metadata={
            "help": "network widths f0..f4; the paper's are 48 96 192 384 768",
            "nargs": 5,
            "metavar": "F",
        },
    )
    iterations: int = field(default=5000, metadata={"help": "training iterations, one batch each"})
    batch_size: int = field(default=8, metadata={"help": "patches per batch"})
    patch_size: int = field(
        default=64,
        metadata={"help": "patch side in voxels, a multiple of 16; the inference window too"},
    )
    lr: float = field(default=1e-4, metadata={"help": "initial learning rate (cosine schedule)"})
    min_lr: float = field(default=1e-7, metadata={"help": "learning rate at the last iteration"})
    weight_decay: float = field(default=1e-5, metadata={"help": "Adam's weight decay"})
    switch_ratio: float = field(
        default=0.4,
        metadata={
            "help": "share of the iterations over which Focal's weight rises from 0 to "
            "--final-focal-weight"
        },
    )
    final_focal_weight: float = field(
        default=1.0,
        metadata={"help": "Focal's share once the ramp ends (the paper: 1, Focal alone)"},
    )
    val_every: int = field(
        default=500,
        metadata={"help": "validate (and save last.pt) every N iterations", "metavar": "N"},
    )
    val_count: int = field(
        default=4,
        metadata={
            "help": "volumes held out for validation when dataset.json has no validation list"
        },
    )
    val_data: Path | None = field(
        default=None,
        metadata={
            "help": "validate on every volume of this dataset.json (default: the data's "
            "validation list, else the last --val-count volumes)"
        },
    )
    label_key: str = field(
        default="label",
        metadata={
            "help": "the entries' truth to learn: label (a whole head's named arteries), or "
            "another label set they list, e.g. vessels (every vessel)"
        },
    )
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: str = field(
        default="auto", metadata={"help": "where to train", "choices": ("auto", "cpu", "cuda")}
    )
    num_workers: int = field(default=0, metadata={"help": "data loader worker processes"})
    augment: bool = field(
        default=True,
        metadata={
            "help": "train on the patches as drawn, without augmentation",
            "flag": "--no-augment",
        },
    )
    # A zoomed label is the old one resampled, off by up to half a voxel at the rim
    # compared with a label drawn on the new grid.
    zoom_prob: float = field(
        default=0.3,
        metadata={"help": "share of patches zoomed 0.7-1.4x per axis (0: exact labels stay exact)"},
    )
    suppress_prob: float = field(
        default=0.1,
        metadata={
            "help": "share of patches background-suppressed as viewing exports are "
            "(0 outside vessels and a few tissue patches)"
        },
    )
    # Preprocessing; stored with the weights and used again at inference.
    target_spacing: tuple[float, float, float] | None = field(
        default=InferenceConfig().target_spacing,
        metadata={
            "help": "resample to this spacing in mm (default: the paper's 0.3542 mm "
            "isotropic; see --native-grid)",
            "metavar": "MM",
        },
    )
    window: tuple[float, float] = field(
        default=(0.0, 1000.0),
        metadata={"help": "intensities mapped to [0, 1], clipped outside", "metavar": "I"},
    )
    window_percentiles: tuple[float, float] | None = field(
        default=None,
        metadata={
            "help": "window each volume between these percentiles instead of --window",
            "metavar": "P",
        },
    )
    tissue_window: float | None = field(
        default=None,
        metadata={
            "help": "map [0, K x the volume's tissue level] to [0, 1] instead of --window: "
            "independent of the gain and of the air in view (recommended: 4)",
            "metavar": "K",
        },
    )
    overlap: float = field(
        default=0.25, metadata={"help": "sliding-window overlap (validation, inference)"}
    )
    probability_sigma: float = field(
        default=0.0,
        metadata={
            "help": "smooth the vessel probability with a Gaussian of SIGMA voxels before "
            "the threshold (validation and inference; steadier rims under noise and "
            "compression)",
            "metavar": "SIGMA",
        },
    )
    # Cleanup of inference masks, stored with the weights (validation scores raw masks).
    clear_air: bool = field(
        default=False,
        metadata={"help": "at inference, mark nothing in air (stored with the weights)"},
    )
    min_piece_voxels: int = field(
        default=0,
        metadata={
            "help": "at inference, remove vessel pieces under N voxels (stored with the "
            "weights; 0 keeps all)",
            "metavar": "N",
        },
    )
    # The best checkpoint is then the one with the best Dice at its own threshold.
    calibrate_threshold: bool = field(
        default=True,
        metadata={
            "help": "keep argmax instead of choosing the vessel-probability threshold on "
            "validation",
            "flag": "--no-calibrate",
        },
    )
    # Any checkpoint vesselzip.model.checkpoints.load_network reads.
    init: Path | None = field(
        default=None,
        metadata={"help": "start from this checkpoint's weights (fresh optimizer and schedule)"},
    )
    resume: bool = field(default=False, metadata={"help": "continue from OUT/last.pt"})
    stop_after: int | None = field(
        default=None,
        metadata={
            "help": "stop after iteration N (saving last.pt), to train in several sittings",
            "metavar": "N",
        },
    )
    log_every: int = field(
        default=10,
        metadata={
            "help": "log the mean loss to train_log.jsonl every N iterations",
            "metavar": "N",
        },
    )
    progress: bool = field(default=True, metadata={"help": "no progress bar", "flag": "--quiet"})
    inference: InferenceConfig = field(init=False)

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        if self.val_data is not None:
            self.val_data = Path(self.val_data)
        self.feature_dims = tuple(int(d) for d in self.feature_dims)
        if len(self.feature_dims) != 5 or min(self.feature_dims) < 1:
            raise VesselzipError(f"feature dims must be 5 positive widths, got {self.feature_dims}")
        if self.target_spacing is not None:
            x, y, z = self.target_spacing
            self.target_spacing = (float(x), float(y), float(z))
        low, high = self.window
        self.window = (float(low), float(high))
        if self.window_percentiles is not None:
            low, high = self.window_percentiles
            self.window_percentiles = (float(low), float(high))
        if self.tissue_window is not None:
            self.tissue_window = float(self.tissue_window)
        if self.init is not None:
            self.init = Path(self.init)
            if not self.init.is_file():
                raise VesselzipError(f"initial checkpoint not found: {self.init}")
        if self.iterations < 1 or self.batch_size < 1 or self.val_every < 1:
            raise VesselzipError("iterations, batch size and val-every must be at least 1")
        if not 0.0 <= self.zoom_prob <= 1.0:
            raise VesselzipError(f"zoom probability must be between 0 and 1, got {self.zoom_prob}")
        if not 0.0 <= self.suppress_prob <= 1.0:
            raise VesselzipError(
                f"suppression probability must be between 0 and 1, got {self.suppress_prob}"
            )
        if self.patch_size % 16:
            raise VesselzipError(f"patch size must be a multiple of 16, got {self.patch_size}")
        try:
            self.inference = InferenceConfig(
                target_spacing=self.target_spacing,
                window=self.window,
                window_percentiles=self.window_percentiles,
                tissue_window=self.tissue_window,
                roi_size=self.patch_size,
                overlap=self.overlap,
                probability_sigma=self.probability_sigma,
                clear_air=self.clear_air,
                min_piece_voxels=self.min_piece_voxels,
            )
        except ValueError as error:
            raise VesselzipError(str(error)) from None

    def to_dict(self) -> dict:
        values = {k: v for k, v in asdict(self).items() if k != "inference"}
        values.update(data=str(self.data), out=str(self.out))
        values["init"] = None if self.init is None else str(self.init)
        values["val_data"] = None if self.val_data is None else str(self.val_data)
        for key in ("feature_dims", "target_spacing", "window", "window_percentiles"):
            if values[key] is not None:
                values[key] = list(values[key])
        return values


# ------------------------------------------------------------------------- data


def load_case(image_path: str, label_path: str, config: InferenceConfig) -> dict:
    """One volume and its label, preprocessed exactly as at inference (RAS, target
    spacing, window: the same `preprocess`) but not clipped, as (1, D, H, W) tensors."""
    from vesselzip.volumes import read_volume

    image_volume, label_volume = read_volume(image_path), read_volume(label_path)
    if image_volume.shape != label_volume.shape:
        raise VesselzipError(f"{image_path} and {label_path} differ in shape")
    grid = ras_grid(image_volume.shape, image_volume.affine)
    cpu = torch.device("cpu")
    image = preprocess(
        image_volume.data,
        grid,
        config,
        cpu,
        scaling=nifti_scaling(image_volume.header),
        clip=False,
    )[0]
    label = nib_to_ras_tensor(label_volume.data > 0, grid)
    shape = resampled_shape(grid, config.target_spacing)
    if tuple(label.shape[1:]) != shape:
        # Linear interpolation of the 0/1 mask then 0.5, as predictions are mapped back.
        label = F.interpolate(label[None], size=shape, mode="trilinear", align_corners=False)[0]
    return {"image": image, "label": (label >= 0.5).to(torch.uint8)}


def nib_to_ras_tensor(mask: np.ndarray, grid) -> torch.Tensor:
    import nibabel as nib

    ras = nib.orientations.apply_orientation(mask, grid.to_ras)
    return torch.from_numpy(np.ascontiguousarray(ras, dtype=np.float32))[None]


def clip_unit(image: torch.Tensor) -> torch.Tensor:
    return image.clamp(0.0, 1.0)


def training_transforms(config: TrainConfig) -> T.Compose:
    """Patch sampling and augmentation. Intensity changes act on the unclipped
    window so that they mimic scanners with other gains and offsets; the image is
    clipped to [0, 1] last, as at inference."""
    keys = ["image", "label"]
    patch = [config.patch_size] * 3
    steps: list[Callable[..., Any]] = [
        T.SpatialPadd(keys, spatial_size=patch),
        T.RandCropByPosNegLabeld(
            keys, label_key="label", spatial_size=patch, pos=1, neg=1, num_samples=1
        ),
    ]
    if config.augment:
        steps += [
            T.RandFlipd(keys, prob=0.5, spatial_axis=0),
            T.RandFlipd(keys, prob=0.5, spatial_axis=1),
            T.RandFlipd(keys, prob=0.5, spatial_axis=2),
            T.RandRotate90d(keys, prob=0.5, max_k=3, spatial_axes=(0, 1)),
            # Per-axis zoom: vessels of other calibres and anisotropic resampling.
            T.RandZoomd(
                keys,
                prob=config.zoom_prob,
                min_zoom=(0.7, 0.7, 0.7),
                max_zoom=(1.4, 1.4, 1.4),
                mode=("trilinear", "nearest"),
                padding_mode="constant",
            ),
            T.RandSimulateLowResolutiond("image", prob=0.2, zoom_range=(0.5, 0.9)),
            T.RandScaleIntensityd("image", factors=0.4, prob=0.5),
            T.RandShiftIntensityd("image", offsets=0.1, prob=0.3),
            T.RandBiasFieldd("image", coeff_range=(0.0, 0.3), prob=0.3),
            # Blotchy brightness a few voxels across (tissue texture, flow artefacts):
            # bright tissue must not pass for vessel on brightness alone.
            T.RandSmoothFieldAdjustIntensityd(
                "image",
                spatial_size=patch,
                rand_size=[max(2, config.patch_size // 8)] * 3,
                mode="trilinear",
                align_corners=True,
                gamma=(0.6, 1.6),
                prob=0.3,
            ),
            T.RandAdjustContrastd("image", gamma=(0.6, 1.6), prob=0.3),
            T.RandGaussianSmoothd(
                "image", sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0), prob=0.2
            ),
            T.RandGaussianNoised("image", std=0.03, prob=0.3),
            # Last: an export's background is exactly 0, whatever the noise before.
            RandSuppressBackgroundd("image", prob=config.suppress_prob),
        ]
    steps += [
        T.Lambdad("image", clip_unit),
        T.EnsureTyped(keys, dtype=(torch.float32, torch.long), track_meta=False),
    ]
    return T.Compose(steps)


def split_dataset(config: TrainConfig) -> tuple[list[dict], list[dict]]:
    training = datalist(config.data, "training")
    if not training:
        raise VesselzipError(f"{config.data} lists no training volumes")
    if config.val_data is not None:
        validation = datalist(config.val_data, "training") + datalist(config.val_data, "validation")
        if not validation:
            raise VesselzipError(f"{config.val_data} lists no volumes")
    elif json.loads(config.data.read_text()).get("validation"):
        validation = datalist(config.data, "validation")
    else:
        count = min(config.val_count, len(training) - 1)
        if count < 1:
            raise VesselzipError("need at least two volumes: one to train, one to validate")
        training, validation = training[:-count], training[-count:]
    lacking = [item["image"] for item in training + validation if config.label_key not in item]
    if lacking:
        raise VesselzipError(
            f"{len(lacking)} volume(s) have no {config.label_key!r} truth, e.g. {lacking[0]}"
        )
    return training, validation


def datalist(path: Path, key: str) -> list[dict]:
    """The `key` list of a decathlon-style dataset.json, paths made absolute."""
    if not path.is_file():
        raise VesselzipError(f"dataset file not found: {path}")
    try:
        if not json.loads(path.read_text()).get(key):
            return []
        items = load_decathlon_datalist(path, True, key, path.parent)
    except (ValueError, KeyError, TypeError) as error:
        raise VesselzipError(f"{path} is not a usable dataset.json: {error}") from None
    for item in items:  # other label sets (e.g. vessels) relative to the file too
        for name, value in item.items():
            if isinstance(value, str) and ".nii" in value and not Path(value).is_absolute():
                item[name] = str((path.parent / value).resolve())
    return items


# ------------------------------------------------------------------- training


def focal_weight(iteration: int, config: TrainConfig) -> float:
    """Share of Focal loss at this iteration: linear from 0 until switch_ratio."""
    ramp = config.switch_ratio * config.iterations
    return config.final_focal_weight * (1.0 if ramp <= 0 else min(1.0, iteration / ramp))


def validation_scores(network, cases: list[dict], config: TrainConfig, device) -> dict:
    """Mean vessel Dice over the held-out volumes on the resampled grid: with argmax
    ("dice"), and at the vessel-probability threshold that scores best over them
    ("threshold", "threshold_dice")."""
    network.eval()
    argmax_scores, threshold_scores = [], []
    for case in cases:
        image = case["image"].clamp(0.0, 1.0)[None].to(device)
        logits = sliding_window_logits(network, image, config.inference)
        truth = (case["label"][0] > 0).to(logits.device)
        argmax_scores.append(_dice(logits.argmax(dim=1)[0] > 0, truth))
        probability = smoothed(vessel_probability(logits), config.inference.probability_sigma)
        threshold_scores.append([_dice(probability >= t, truth) for t in THRESHOLDS])
    network.train()
    mean_by_threshold = np.mean(threshold_scores, axis=0)
    best = int(np.argmax(mean_by_threshold))
    return {
        "dice": float(np.mean(argmax_scores)),
        "threshold": THRESHOLDS[best],
        "threshold_dice": float(mean_by_threshold[best]),
    }


def _dice(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    overlap = (prediction & truth).sum().item()
    total = prediction.sum().item() + truth.sum().item()
    return 1.0 if total == 0 else 2.0 * overlap / total


def build_network(config: TrainConfig):
    from vesselzip.model.network import MambaVesselNet

    return MambaVesselNet(in_chans=1, out_chans=2, feature_dims=config.feature_dims)


def checkpoint_payload(
    network, optimizer, scheduler, iteration, dice, best, config, vessel_threshold=None
) -> dict:
    inference = replace(config.inference, vessel_threshold=vessel_threshold)
    return {
        # The published keys: a checkpoint written here loads wherever theirs does.
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "dice_metric": float(dice),
        "epoch": int(iteration),
        # What resuming and inference need.
        "scheduler": scheduler.state_dict(),
        "iteration": int(iteration),
        "best_dice": float(best),
        "config": {
            "network": {"in_chans": 1, "out_chans": 2, "feature_dims": list(config.feature_dims)},
            "inference": inference.to_dict(),
            "training": config.to_dict(),
        },
    }


def infinite_batches(loader):
    while True:
        yield from loader


def train(config: TrainConfig) -> dict:
    """Train (or resume) and return a summary: best Dice, iterations, seconds."""
    # Imported here, like the network, so that importing this module does not need them.
    from vesselzip.model import checkpoints

    device = resolve_device(config.device)
    config.out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = config.out / "last.pt", config.out / "best.pt"
    log_path = config.out / "train_log.jsonl"

    network = build_network(config)
    if config.init is not None and not (config.resume and last_path.is_file()):
        state = {k: v.float() for k, v in checkpoints.load_checkpoint_state(config.init).items()}
        try:
            checkpoints.check_state_dict(network, state)
        except ModelNotAvailableError as error:
            raise VesselzipError(
                f"{config.init} does not fit feature_dims {list(config.feature_dims)}: {error}"
            ) from None
        network.load_state_dict(state)
    network = network.to(device)
    optimizer = torch.optim.Adam(
        network.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.iterations, eta_min=config.min_lr
    )
    start, best = 0, -1.0
    if config.resume and last_path.is_file():
        saved = torch.load(last_path, map_location=device, weights_only=True)
        network.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start, best = int(saved["iteration"]), float(saved["best_dice"])
    # Reseeded from the iteration so a resumed run does not replay the same patches.
    set_determinism(seed=config.seed + start)

    train_files, val_files = split_dataset(config)
    load = lambda item: load_case(item["image"], item[config.label_key], config.inference)  # noqa: E731
    train_cases = [load(item) for item in train_files]
    val_cases = [load(item) for item in val_files]
    loader = DataLoader(
        Dataset(train_cases, transform=training_transforms(config)),
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        drop_last=len(train_cases) >= config.batch_size,
    )
    batches = infinite_batches(loader)

    # Dice over the whole batch: a background patch with no vessel does not make it blow up.
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    focal = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0)

    def save(path, iteration, dice, threshold):
        payload = checkpoint_payload(
            network, optimizer, scheduler, iteration, dice, best, config, threshold
        )
        checkpoints.save_checkpoint(payload, path)

    started = time.monotonic()
    network.train()
    losses: list[float] = []
    with log_path.open("a") as log, TrainingProgress(config, start) as bar:
        if start == 0:
            log.write(json.dumps({"event": "start", "config": config.to_dict()}) + "\n")
        stop = min(config.iterations, config.stop_after or config.iterations)
        iteration, threshold = start, None
        for iteration in range(start + 1, stop + 1):
            batch = next(batches)
            image, label = batch["image"].to(device), batch["label"].to(device)
            weight = focal_weight(iteration - 1, config)
            with autocast_for(device):
                logits = network(image)
            logits = logits.float()
            loss = (1 - weight) * dice_ce(logits, label) + weight * focal(logits, label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.advance()

            if iteration % config.log_every == 0:
                mean_loss = float(np.mean(losses))
                entry = {
                    "iteration": iteration,
                    "loss": mean_loss,
                    "focal_weight": round(weight, 4),
                    "lr": scheduler.get_last_lr()[0],
                    "seconds": round(time.monotonic() - started, 1),
                }
                log.write(json.dumps(entry) + "\n")
                log.flush()
                bar.show(loss=mean_loss, best=best)
                losses.clear()
            if iteration % config.val_every == 0 or iteration == config.iterations:
                scores = validation_scores(network, val_cases, config, device)
                if config.calibrate_threshold:
                    dice, threshold = scores["threshold_dice"], scores["threshold"]
                else:
                    dice, threshold = scores["dice"], None
                if dice > best:
                    best = dice
                    save(best_path, iteration, dice, threshold)
                save(last_path, iteration, dice, threshold)
                entry = {
                    "iteration": iteration,
                    "val_dice": scores["dice"],
                    "val_threshold": scores["threshold"],
                    "val_threshold_dice": scores["threshold_dice"],
                    "best_dice": best,
                }
                log.write(json.dumps(entry) + "\n")
                log.flush()
                bar.show(best=best, dice=dice)
        if iteration > start and iteration % config.val_every and iteration != config.iterations:
            save(last_path, iteration, best, threshold)  # stopped between validations
    return {
        "best_dice": best,
        "iterations": iteration,
        "resumed_from": start,
        "seconds": round(time.monotonic() - started, 1),
        "best_checkpoint": str(best_path),
        "last_checkpoint": str(last_path),
    }


class TrainingProgress:
    """The training bar (rich, on stderr): iterations, time, and the latest loss and
    Dice. Off when `config.progress` is; drawn once at the end where stderr is no
    terminal."""

    def __init__(self, config: TrainConfig, start: int):
        self._bar = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(stderr=True),
            disable=not config.progress,
            refresh_per_second=2,
        )
        self._task = self._bar.add_task(
            "train", total=config.iterations, completed=start, status=""
        )
        self._status: dict[str, float] = {}

    def __enter__(self) -> TrainingProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.stop()

    def advance(self) -> None:
        self._bar.advance(self._task)

    def show(self, **values: float) -> None:
        """Show these numbers (loss, best, dice) next to the bar, replacing older ones."""
        self._status.update(values)
        status = "  ".join(f"{name} {value:.4f}" for name, value in self._status.items())
        self._bar.update(self._task, status=status)
