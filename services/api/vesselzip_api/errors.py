"""Errors only the gateway raises; like every VesselzipError they become
`{"detail": ...}` with their `http_status`."""

from vesselzip.errors import VesselzipError


class UnauthorizedError(VesselzipError):
    """No API key, or one the gateway does not know."""

    http_status = 401


class ForbiddenError(VesselzipError):
    """The job belongs to another API key."""

    http_status = 403


class JobNotReadyError(VesselzipError):
    """The job has no mask (yet): it is queued, running, failed or cancelled."""

    http_status = 409


class ServiceUnavailableError(VesselzipError):
    """Redis cannot be reached right now."""

    http_status = 503


class EmptyDatasetError(VesselzipError):
    """A sweep over a dataset that has no volumes yet: nothing to run."""

    http_status = 422
