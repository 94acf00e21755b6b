"""The models the workers can load, as each worker announced them: the gateway accepts
a model name (and a volume's size for it) only when a worker offers it, without
importing the model code itself.

One sorted set: a member per (worker, model), scored with the time its offer ends.
Workers renew their offers at each heartbeat, so a stopped worker's offers lapse."""

from __future__ import annotations

import time
from typing import cast

from redis import Redis

from vesselzip.model_info import ModelInfo

OFFERS_KEY = "vesselzip:model-offers"
_SEPARATOR = "\n"  # worker names and JSON never hold a raw newline


def _member(worker_name: str, model: ModelInfo) -> str:
    return f"{worker_name}{_SEPARATOR}{model.model_dump_json()}"


def announce_models(
    connection: Redis, worker_name: str, models: list[ModelInfo], ttl_s: float
) -> None:
    """Offer `models` for `ttl_s` seconds, in place of what this worker offered before."""
    now = time.time()
    with connection.pipeline() as pipe:
        pipe.zremrangebyscore(OFFERS_KEY, "-inf", now)
        for member in cast("list[bytes]", connection.zrange(OFFERS_KEY, 0, -1)):
            if member.decode().split(_SEPARATOR, 1)[0] == worker_name:
                pipe.zrem(OFFERS_KEY, member)
        if models:
            pipe.zadd(OFFERS_KEY, {_member(worker_name, m): now + ttl_s for m in models})
        pipe.execute()


def renew_models(
    connection: Redis, worker_name: str, models: list[ModelInfo], ttl_s: float
) -> None:
    """Keep this worker's offers for another `ttl_s` seconds (only those it still has:
    after a Redis flush, announce_models writes them again)."""
    if models:
        now = time.time()
        members = {_member(worker_name, m): now + ttl_s for m in models}
        with connection.pipeline() as pipe:  # lapsed offers go first, then are not renewed
            pipe.zremrangebyscore(OFFERS_KEY, "-inf", now)
            pipe.zadd(OFFERS_KEY, members, xx=True)
            pipe.execute()


def offered_models(connection: Redis) -> dict[str, ModelInfo]:
    """The models some worker offers now, by name."""
    members = cast("list[bytes]", connection.zrangebyscore(OFFERS_KEY, time.time(), "+inf"))
    offers = (ModelInfo.model_validate_json(m.decode().split(_SEPARATOR, 1)[1]) for m in members)
    return {info.name: info for info in offers}
