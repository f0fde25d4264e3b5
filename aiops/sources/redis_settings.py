"""The settings of ``aiops source redis`` and ``aiops publish redis``: every size bounded.

They come from the command line (and ``AIOPS_REDIS_*`` variables); the routes, the delivery
patience and the agent configs come from the gateway's config file, read by the same code as
the gateway's (aiops/gateway/config.py), so one file routes both HTTP and Redis traffic.
"""

from __future__ import annotations

import os
import socket

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A stream or group name: printable, no spaces, bounded (Redis allows anything; we refuse surprises).
NAME_PATTERN = r"^[A-Za-z0-9_.:{}\-]{1,200}$"
MAX_STREAMS = 16


def default_consumer() -> str:
    """``<host>-<pid>``: unique per process, so two consumers never share a pending list by accident."""
    return f"{socket.gethostname()[:100]}-{os.getpid()}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class RedisSourceSettings(_Strict):
    url: str = Field(default="redis://127.0.0.1:6379/0", min_length=1, max_length=2000)
    streams: list[str] = Field(min_length=1, max_length=MAX_STREAMS)
    group: str = Field(default="aiops", pattern=NAME_PATTERN)
    consumer: str = Field(default_factory=default_consumer, pattern=NAME_PATTERN)
    # The name the gateway config's routes see as the sender (a route's `sources` may name it).
    source_name: str = Field(default="redis", min_length=1, max_length=100)
    dead_letter_stream: str = Field(default="aiops:events:dead", pattern=NAME_PATTERN)
    dead_letter_maxlen: int = Field(default=100_000, ge=100, le=10_000_000)
    batch: int = Field(default=200, ge=1, le=1000, description="entries read at most per XREADGROUP")
    block_ms: int = Field(default=1000, ge=10, le=60_000)
    max_entry_bytes: int = Field(default=32_000, ge=256, le=1024 * 1024)
    max_fields: int = Field(default=16, ge=1, le=256)
    claim_idle_seconds: float = Field(default=60.0, ge=0.1, le=86_400)
    claim_every_seconds: float = Field(default=5.0, ge=0.05, le=3600)
    pushback_pause_seconds: float = Field(default=0.5, gt=0, le=60)
    pushback_max_pause_seconds: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("streams")
    @classmethod
    def _names(cls, streams: list[str]) -> list[str]:
        import re

        bad = [s for s in streams if not re.match(NAME_PATTERN, s)]
        if bad:
            raise ValueError(f"not valid stream names: {', '.join(repr(s[:50]) for s in bad)}")
        return list(dict.fromkeys(streams))


class RedisPublishSettings(_Strict):
    url: str = Field(default="redis://127.0.0.1:6379/0", min_length=1, max_length=2000)
    stream: str = Field(default="aiops:audit", pattern=NAME_PATTERN)
    maxlen: int = Field(default=1_000_000, ge=100, le=100_000_000)
    agents: list[str] = Field(default_factory=list, max_length=1000, description="only these (all if empty)")
    all_steps: bool = Field(default=False, description="every audit row, not only an action's life")
    batch: int = Field(default=500, ge=1, le=10_000)
    every_seconds: float = Field(default=1.0, ge=0.01, le=3600)
    max_detail_bytes: int = Field(default=16_000, ge=256, le=1024 * 1024)

    @property
    def positions_key(self) -> str:
        """The Redis hash holding the last published audit ``seq`` of each agent."""
        return f"{self.stream}:positions"
