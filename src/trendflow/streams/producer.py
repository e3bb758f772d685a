"""Appending to the streams: a batch is one command and one round trip, and lands whole or not at all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

import redis.asyncio as redis

from trendflow.streams import names
from trendflow.streams.client import redis_errors_as_transient


async def publish_raw_events(
    client: redis.Redis, payloads: Sequence[bytes], *, accepted_at_ms: int
) -> list[str]:
    """Append raw events (JSON bytes, as posted) to trends:raw; returns the entry ids."""
    return await _xadd_many(
        client, names.RAW_STREAM, names.EVENT_FIELD, payloads, {names.ACCEPTED_AT_FIELD: accepted_at_ms}
    )


async def publish_embed_jobs(client: redis.Redis, trend_ids: Sequence[UUID]) -> list[str]:
    """One job per stored trend that needs its embedding."""
    return await _xadd_many(client, names.EMBED_STREAM, names.TREND_ID_FIELD, [str(tid) for tid in trend_ids])


# XADD once per value; every entry also carries the same constant fields. A script, because one command is
# ~5× cheaper for the client than a pipeline of 500 XADDs, and atomic: under maxmemory Redis refuses the whole
# batch (OOM), where a pipeline could land half of it before the spool took all of it again.
XADD_EACH = """
local field, last_constant = ARGV[1], 2 + 2 * tonumber(ARGV[2])
local ids = {}
for i = last_constant + 1, #ARGV do
  local args = {KEYS[1], '*', field, ARGV[i]}
  for c = 3, last_constant do args[#args + 1] = ARGV[c] end
  ids[#ids + 1] = redis.call('XADD', unpack(args))
end
return ids
"""


async def _xadd_many(
    client: redis.Redis,
    stream: str,
    field: str,
    values: Sequence[bytes | str],
    constants: Mapping[str, bytes | str | int] | None = None,
) -> list[str]:
    """Append one entry per value, {field: value, **constants}; returns the entry ids, in order."""
    if not values:
        return []
    constants = constants or {}
    flat = [item for pair in constants.items() for item in pair]
    async with redis_errors_as_transient():
        script = client.register_script(XADD_EACH)
        ids = await script(keys=[stream], args=[field, len(constants), *flat, *values])
    return [i.decode() if isinstance(i, bytes) else i for i in ids]
