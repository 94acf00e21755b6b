"""Typed errors. Every message is written for the user: the API maps these to 4xx
responses and the CLI prints them as one line, so they must never need a traceback."""


class VesselzipError(Exception):
    """Base class for every error vesselzip raises on purpose."""

    #: HTTP status the gateway answers with for this kind of error.
    http_status = 400


class InvalidVolumeError(VesselzipError):
    """The upload is not a usable 3D volume (not NIfTI, corrupt, 4D, empty, NaN...)."""

    http_status = 422


class VolumeTooLargeError(InvalidVolumeError):
    """The volume (or its decompressed stream) exceeds a configured limit."""

    http_status = 413


class LimitExceededError(VesselzipError):
    """A request that would go beyond a configured count (volumes in a dataset, jobs
    in a sweep)."""

    http_status = 422


class InvalidCodecConfigError(VesselzipError):
    """Unknown codec id, unknown mode, or a parameter out of range."""

    http_status = 422


class CorruptBlobError(VesselzipError):
    """A stored compressed-volume blob failed its checks (magic, version, checksum)."""

    http_status = 422


class NotFoundError(VesselzipError):
    """A job, dataset, sweep or blob does not exist."""

    http_status = 404


class ModelNotAvailableError(VesselzipError):
    """Unknown segmenter name, or a model whose weights or checkpoint cannot be loaded."""

    http_status = 422


class StoreUnavailableError(VesselzipError):
    """The blob store cannot be read or written right now (read-only, full, gone).
    A fault of the service, not of the request: worth trying again later."""

    http_status = 503


class NotInstalledError(VesselzipError):
    """A feature whose optional dependencies this installation left out (a slim
    gateway draws no figures)."""

    http_status = 501


#: Characters of a caller's input an error message repeats at most.
QUOTE_LIMIT = 80


def quoted(value: object) -> str:
    """`value` as an error message repeats it: its repr, cut to QUOTE_LIMIT characters
    and then followed by its length, so a huge input never makes a huge answer."""
    text = repr(value)
    return shortened(text, QUOTE_LIMIT, len(value) if isinstance(value, str) else len(text))


def shortened(text: str, limit: int, length: int | None = None) -> str:
    """`text` cut to `limit` characters, then "… (N characters)" when it was longer
    (N is `length` when given: the size of what `text` stands for)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) if length is None else length} characters)"
