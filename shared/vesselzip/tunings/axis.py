"""What a tuning searches along: one codec's mode, as an ordered list of candidate
values from the mildest to the strongest compression.

The candidates are round numbers (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8 per decade for
error bounds; quarter bits/voxel for rates; whole dB for PSNR), so a tuning meets the
settings people write by hand, and reuses a sweep's jobs at `zfp:tolerance=500` or
`zfp:rate=4`. Bisection over the list assumes that compression grows along it, which
is what each mode promises; the Dice loss usually grows with it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vesselzip.errors import InvalidCodecConfigError, VesselzipError, quoted

#: Round mantissas per decade for error bounds (ratio ≤ 1.25 between neighbours).
DECADE_MANTISSAS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
RATES = (
    *(r / 4 for r in range(1, 8)),  # 0.25 .. 1.75
    *(r / 2 for r in range(4, 8)),  # 2 .. 3.5
    4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 16.0,
)  # fmt: skip


@dataclass(frozen=True)
class ModeRange:
    """A mode's default candidates and the way compression grows along them."""

    default_low: float
    default_high: float
    stronger_when: str  # "larger" or "smaller": the direction that compresses more
    series: str  # "decade", "rates", "integers" (round ones), "every_integer", "decibels"


#: The modes a tuning can search, by name (the codec decides which it has).
TUNABLE_MODES = {
    "tolerance": ModeRange(1e-3, 1e4, "larger", "decade"),
    "relative_tolerance": ModeRange(1e-6, 0.5, "larger", "decade"),
    "l2norm": ModeRange(1e-2, 1e8, "larger", "decade"),
    "near": ModeRange(1, 255, "larger", "integers"),
    "rate": ModeRange(0.25, 16, "smaller", "rates"),
    "psnr": ModeRange(20, 120, "smaller", "decibels"),
    "precision": ModeRange(2, 32, "smaller", "every_integer"),
}


class TuningSpecError(VesselzipError):
    """A codec, mode or range that cannot be tuned."""

    http_status = 422


@dataclass(frozen=True)
class SearchAxis:
    codec: str
    mode: str
    values: tuple[float, ...]  # mildest first
    configs: tuple[dict[str, Any], ...]  # the codec config of each value

    @property
    def text(self) -> str:
        return f"{self.codec}:{self.mode}"


def _series(kind: str, low: float, high: float) -> list[float]:
    if kind == "rates":
        values = list(RATES)
    elif kind in ("decibels", "every_integer"):
        values = [float(v) for v in range(math.floor(low), math.ceil(high) + 1)]
    else:
        values = [
            float(f"{m * 10.0**k:.6g}")
            for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
            for m in DECADE_MANTISSAS
        ]
        if kind == "integers":
            values = sorted({float(max(1, round(v))) for v in values} | {2.0, 3.0})
    return sorted(v for v in set(values) if low <= v <= high)


def search_axis(codec_mode: str, value_range: tuple[float, float] | None = None) -> SearchAxis:
    """The axis for "codec:mode" (e.g. "zfp:tolerance"), over `value_range` (inclusive)
    or the mode's default range; every value checked by the codec itself."""
    from vesselzip.codecs import codec_config_from_options, codec_ids, get_codec
    from vesselzip.sweeps.grid import number_text

    codec, sep, mode = codec_mode.strip().partition(":")
    mode = mode.split("=", 1)[0].strip()
    if not sep or not codec or not mode:
        raise TuningSpecError(
            f"give the codec and the mode to tune as CODEC:MODE (e.g. zfp:tolerance), "
            f"not {quoted(codec_mode)}"
        )
    if codec not in codec_ids():
        raise TuningSpecError(
            f"unknown codec {quoted(codec)}; codecs: {', '.join(sorted(codec_ids()))}"
        )
    if mode not in TUNABLE_MODES:
        raise TuningSpecError(
            f"mode {quoted(mode)} cannot be tuned; tunable modes: {', '.join(TUNABLE_MODES)} "
            "(each codec has some of them; lossless codecs have none)"
        )
    mode_range = TUNABLE_MODES[mode]
    low, high = value_range or (mode_range.default_low, mode_range.default_high)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise TuningSpecError(
            f"the range must be two positive numbers, low < high; got {low}, {high}"
        )
    values, configs = [], []
    refusal = None
    for value in _series(mode_range.series, low, high):
        try:
            config = codec_config_from_options(codec, {mode: number_text(value)})
            get_codec(config)
        except InvalidCodecConfigError as exc:
            refusal = str(exc)
            continue
        values.append(value)
        configs.append(config)
    if len(values) < 2:
        raise TuningSpecError(
            f"{codec}:{mode} has fewer than two usable values in [{low:g}, {high:g}]"
            + (f" ({refusal})" if refusal else "")
        )
    if mode_range.stronger_when == "smaller":
        values.reverse()
        configs.reverse()
    return SearchAxis(codec, mode, tuple(values), tuple(configs))
