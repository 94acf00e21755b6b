"""Codecs: small objects with an id and a JSON config, found through a registry.

Every module in this package except `base` is imported here, so a new codec
(say `sz3.py` with an `@register_codec` class) is one new file.
"""

import importlib
import pkgutil

from vesselzip.codecs.base import (
    Codec,
    codec_config_from_options,
    codec_ids,
    get_codec,
    parse_codec_spec,
    register_codec,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "Codec",
    "codec_config_from_options",
    "codec_ids",
    "get_codec",
    "parse_codec_spec",
    "register_codec",
]
