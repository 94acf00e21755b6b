"""The grid of a sweep: codec specs parsed into canonical configs (the baseline first),
their short text form and the group (table) each one belongs to."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from vesselzip.errors import InvalidCodecConfigError

#: The paper's grid: ZFP fixed rate 16, 8, 4, 2 bits/voxel and absolute error
#: tolerance 500, 1000, 1500 (the baseline is added to every grid).
PAPER_GRID = (
    "zfp:rate=16",
    "zfp:rate=8",
    "zfp:rate=4",
    "zfp:rate=2",
    "zfp:tolerance=500",
    "zfp:tolerance=1000",
    "zfp:tolerance=1500",
)
#: The codecs side by side: the paper's ZFP grid; SZ3, SPERR and LERC at the same
#: absolute bounds; JPEG 2000 and HTJ2K at the bits/voxel of ZFP's fixed rates below
#: 16; JPEG-LS at a few NEAR values; and the lossless floors (JPEG-LS, JPEG 2000 and
#: HTJ2K lossless, Zstandard, Blosc2), so every table shows what lossless gives.
COMPARISON_GRID = (
    *PAPER_GRID,
    *(
        f"{codec}:tolerance={bound}"
        for codec in ("sz3", "sperr", "lerc")
        for bound in (500, 1000, 1500)
    ),
    *(f"{codec}:rate={rate}" for codec in ("jpeg2000", "htj2k") for rate in (8, 4, 2)),
    "jpegls:near=2",
    "jpegls:near=8",
    "jpegls:near=32",
    "jpegls",
    "jpeg2000:lossless",
    "htj2k:lossless",
    "zstd",
    "blosc2",
)
#: Grids by name: a grid may name one in place of its specs ("comparison").
NAMED_GRIDS = {"paper": PAPER_GRID, "comparison": COMPARISON_GRID}
BASELINE: dict[str, Any] = {"id": "none"}
#: Distinct settings a grid may hold besides the baseline (64 in all with it).
MAX_GRID_SETTINGS = 63

Group = Literal["baseline", "fixed_rate", "tolerance", "other"]


def canonical(config: dict[str, Any]) -> str:
    """One text per codec config (key order does not matter)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def parse_grid(specs: Sequence[str] | str | None) -> list[dict[str, Any]]:
    """Canonical codec configs for specs such as ["zfp:rate=2", "zfp:tolerance=500"]
    (or one comma-separated string), each spec possibly the name of a grid of
    NAMED_GRIDS; None means the paper's grid. The baseline comes first; duplicates are
    dropped, the order is kept."""
    from vesselzip.codecs import parse_codec_spec

    if specs is None:
        specs = PAPER_GRID
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    configs = [BASELINE]
    seen = {canonical(BASELINE)}
    specs = [named for spec in specs for named in NAMED_GRIDS.get(spec.strip(), (spec,))]
    for spec in specs:
        config = parse_codec_spec(spec)
        if canonical(config) not in seen:
            seen.add(canonical(config))
            configs.append(config)
    if len(configs) - 1 > MAX_GRID_SETTINGS:
        raise InvalidCodecConfigError(
            f"a grid holds at most {MAX_GRID_SETTINGS} distinct settings besides the "
            f"baseline, got {len(configs) - 1}"
        )
    return configs


def setting_spec(config: dict[str, Any]) -> str:
    """The short text form of a config ("zfp:rate=2"); parse_codec_spec reads it back."""
    options = {k: v for k, v in config.items() if k != "id"}
    parts = []
    mode = options.pop("mode", None)
    if mode is not None:
        value = options.pop("value", None)
        parts.append(mode if value is None else f"{mode}={number_text(value)}")
    parts += [f"{key}={number_text(value)}" for key, value in sorted(options.items())]
    return str(config["id"]) + (":" + "+".join(parts) if parts else "")


def number_text(value: Any) -> str:
    """A parameter as a spec writes it: 16, 0.5 (not 16.0, 0.50000), and every digit a
    float needs to be read back the same (2.1234567, where :g would round)."""
    if not isinstance(value, float):
        return str(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def setting_group(config: dict[str, Any]) -> Group:
    if config.get("id") == "none":
        return "baseline"
    if config.get("id") == "zfp" and config.get("mode") == "rate":
        return "fixed_rate"
    if config.get("id") == "zfp" and config.get("mode") == "tolerance":
        return "tolerance"
    return "other"
