"""The codec interface and registry, in the style of numcodecs.

A codec is a small object with an id and a JSON config. `get_codec(config)` finds
its class in the registry; `parse_codec_spec("zfp:rate=2")` turns the short text
form used on the command line and in sweep grids into such a config.

Spec syntax: `ID[:OPTION[+OPTION...]]`, each option `key=value` or a bare `key`.
A grid is a comma-separated list of specs, so options are joined with `+`
(a `+` is an option separator only when a key name follows it, so `1e+3` is a
number). Examples: `none`, `zfp:rate=2`, `zfp:tolerance=500+backend=pyzfp`,
`zfp:reversible`. The grammar is strict, because specs arrive from strangers: a
key is ASCII (`[A-Za-z_][A-Za-z0-9_]*`), given once, never `id`; a number is
ASCII digits with an optional sign, decimal point and exponent (Python's own
int() and float() would also take `1_6`, other scripts' digits and `inf`).
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from vesselzip.errors import QUOTE_LIMIT, InvalidCodecConfigError, quoted, shortened

_registry: dict[str, type[Codec]] = {}
_OPTION_SEPARATOR = re.compile(r"\+(?=[A-Za-z_])")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Explicit [0-9]: \d would match every script's digits. Used with fullmatch, never
# with `$`, which also matches before a final newline.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class Codec(ABC):
    """Turns an array into bytes and back. Subclasses set `codec_id` and register."""

    codec_id: ClassVar[str]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Codec:
        """Build from a config without its "id"; unknown keys are an error."""
        known = inspect.signature(cls).parameters
        unknown = [key for key in config if key not in known]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise InvalidCodecConfigError(
                f"unknown option {quoted(unknown[0])}{more} for codec {cls.codec_id!r}; "
                f"it takes {', '.join(known) or 'none'}"
            )
        return cls(**config)

    @classmethod
    def config_from_options(cls, options: dict[str, str | None]) -> dict[str, Any]:
        """Map the `key=value` options of a spec to config keys (override to add shorthands)."""
        return {key: _parse_value(value) for key, value in options.items()}

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-able config including "id"; `get_codec(config)` rebuilds an equal codec."""

    @abstractmethod
    def encode(self, array: np.ndarray) -> bytes:
        """Compress a 3D array."""

    @abstractmethod
    def decode(self, payload: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Rebuild an array of `shape` and `dtype` from what `encode` returned."""

    def encode_slabs(self, array: np.ndarray, planes: int) -> Iterator[bytes]:
        """Compress `array` as slabs of `planes` along its first axis, each one decodable
        alone by `decode`, so neither side ever holds a full-size working copy. A codec
        whose settings depend on the whole volume (e.g. a relative tolerance) overrides
        this to derive them once."""
        for start in range(0, array.shape[0], planes):
            yield self.encode(array[start : start + planes])

    @abstractmethod
    def describe(self) -> str:
        """A short label for tables and plots, e.g. "zfp rate=2"."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self) -> str:
        return f"<codec {self.describe()}>"


def mode_as_key(codec_id: str, config: dict[str, Any], modes: tuple[str, ...]) -> dict[str, Any]:
    """A config whose mode is written as its key ("rate=2", "reversible") turned into
    mode=rate, value=2 / mode=reversible. One mode, named once: either so or as
    mode=MODE+value=NUMBER, never both (neither may override the other)."""
    named = [key for key in config if key in modes]
    if len(named) > 1 or (named and "mode" in config):
        given = named + (["mode"] if "mode" in config else [])
        raise InvalidCodecConfigError(f"give one {codec_id} mode, not {' and '.join(given)}")
    if named:
        (mode,) = named
        if "value" in config:
            raise InvalidCodecConfigError(
                f"give the {codec_id} value as {mode}=VALUE, not as a separate value option"
            )
        value = config.pop(mode)
        config["mode"] = mode
        if value is not True:  # a bare key gives no value; the mode may need one
            config["value"] = value
    return config


def bounded_number(
    codec_id: str,
    mode: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    open_low: bool = True,
) -> float:
    """`value` as a float when it is a finite real number in (low, high] ([low, high]
    with open_low False), else InvalidCodecConfigError saying what the mode takes."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidCodecConfigError(
            f"{codec_id} mode {mode!r} needs a numeric value, got {quoted(value)}"
        )
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    above = number > low if open_low else number >= low
    if not (math.isfinite(number) and above and number <= high):
        lower = "above" if open_low else "at least"
        upper = "" if high == math.inf else f" and at most {high:g}"
        raise InvalidCodecConfigError(
            f"{codec_id} {mode} must be {lower} {low:g}{upper}, got {quoted(value)}"
        )
    return number


class ModeValueCodec(Codec):
    """A codec set by one mode and its number ({"mode": MODE, "value": NUMBER}), the mode
    written as the spec's key ("sz3:tolerance=5"). Subclasses name their `modes`, the
    largest value a mode takes where it is bounded (`highs`; every value is above 0),
    and code through `encode_slabs`, which sees the whole volume first."""

    modes: ClassVar[tuple[str, ...]]
    highs: ClassVar[dict[str, float]] = {}

    def __init__(self, mode: str = "tolerance", value: float | None = None):
        if mode not in self.modes:
            raise InvalidCodecConfigError(
                f"unknown {self.codec_id} mode {quoted(mode)}; "
                f"choose one of {', '.join(self.modes)}"
            )
        self.mode = mode
        self.value = bounded_number(self.codec_id, mode, value, 0.0, self.highs.get(mode, math.inf))

    @classmethod
    def config_from_options(cls, options: dict[str, str | None]) -> dict[str, Any]:
        return mode_as_key(cls.codec_id, super().config_from_options(options), cls.modes)

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "mode": self.mode, "value": self.value}

    def describe(self) -> str:
        return f"{self.codec_id} {self.mode}={self.value:g}"

    def encode(self, array: np.ndarray) -> bytes:
        (payload,) = self.encode_slabs(array, array.shape[0])
        return payload


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make `cls` reachable through `get_codec` by its `codec_id`."""
    _registry[cls.codec_id] = cls
    return cls


def codec_ids() -> list[str]:
    return sorted(_registry)


def get_codec(config: dict[str, Any]) -> Codec:
    """The codec a config describes, e.g. {"id": "zfp", "mode": "rate", "value": 2}."""
    if not isinstance(config, dict) or "id" not in config:
        raise InvalidCodecConfigError(
            f"a codec config must be an object with an 'id': {quoted(config)}"
        )
    options = dict(config)
    cls = _codec_class(options.pop("id"))
    try:
        return cls.from_config(options)
    except (ValueError, TypeError, OverflowError) as exc:
        # A codec's own checks raise InvalidCodecConfigError; anything else a value can
        # make it raise (a 400-digit number, say) is still the caller's config at fault.
        raise InvalidCodecConfigError(
            f"invalid {cls.codec_id} config {quoted(options)}: {shortened(str(exc), QUOTE_LIMIT)}"
        ) from exc


def parse_codec_spec(spec: str) -> dict[str, Any]:
    """The canonical config for a spec such as "zfp:rate=2" or "none" (validated)."""
    codec_id, colon, rest = spec.strip().partition(":")
    cls = _codec_class(codec_id, f" in codec spec {quoted(spec)}" if colon else "")
    options: dict[str, str | None] = {}
    for option in _OPTION_SEPARATOR.split(rest) if colon else []:
        key, eq, value = option.partition("=")
        if not _KEY.fullmatch(key) or (eq and not value):
            raise InvalidCodecConfigError(
                f"bad option {quoted(option)} in codec spec {quoted(spec)}; "
                "write key=value or a bare key, joined with +"
            )
        if key in options:
            raise InvalidCodecConfigError(
                f"option {quoted(key)} is given twice in codec spec {quoted(spec)}"
            )
        options[key] = value if eq else None
    return _canonical_config(cls, options)


def codec_config_from_options(codec_id: str, options: Mapping[str, str | None]) -> dict[str, Any]:
    """The canonical config (validated) for a codec id and its options as text, each
    `key: value` or `key: None` for a bare key; what `parse_codec_spec` does once it has
    split a spec, for callers that have the parts already (separate form fields)."""
    return _canonical_config(_codec_class(codec_id), dict(options))


def _codec_class(codec_id: Any, where: str = "") -> type[Codec]:
    cls = _registry.get(codec_id) if isinstance(codec_id, str) else None
    if cls is None:
        raise InvalidCodecConfigError(
            f"unknown codec {quoted(codec_id)}{where}; available: {', '.join(codec_ids())}"
        )
    return cls


def _canonical_config(cls: type[Codec], options: dict[str, str | None]) -> dict[str, Any]:
    if "id" in options:
        # The id comes before the colon; an `id` option would swap the codec.
        raise InvalidCodecConfigError(
            f"'id' is not an option: the codec ({cls.codec_id}) is named before the colon, "
            "as in zfp:rate=2"
        )
    config = {**cls.config_from_options(options), "id": cls.codec_id}
    return get_codec(config).get_config()


def _parse_value(text: str | None) -> Any:
    """A bare key means True; a number (the strict ASCII form of _NUMBER) becomes an
    int or a float; any other text stays text, for the codec to accept or refuse."""
    if text is None:
        return True
    if _INTEGER.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # beyond int()'s 4300 digits: inf, refused as not finite
            return float(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    return text
