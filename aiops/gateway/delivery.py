"""Delivery: the only way out of the gateway is ``AiopsClient.send_events`` (one batch per agent and request).

A request is answered 2xx only once Temporal has accepted every batch. Transient
failures (Temporal unreachable, a deadline, the agent between two runs) are retried
briefly with backoff, within ``delivery.timeout_seconds``; then the request is
answered 503 with ``Retry-After`` and the sender (Alertmanager) delivers again later.
Redelivering a batch that was in fact accepted is harmless: event ids are stable, so
the agent drops the repeats.

An agent that is not running (never started, stopped, failed) is also answered 503,
not 4xx: Alertmanager drops a notification answered 4xx for good, while the agent
may be restarted within minutes (``aiops agents start``); a 503 keeps the alert in
Alertmanager's retries and visible in its ``alertmanager_notifications_failed_total``.
A route that names the agent's config file (``agent_configs``) starts it instead,
by signal-with-start.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agents.errors import AiopsError
from agents.models import AgentConfig, SystemEvent
from aiops.client import AgentNotRunningError, AiopsClient, ClientError
from aiops.gateway.config import Delivery
from aiops.health_server import temporal_check

log = logging.getLogger("aiops.gateway")

CONNECT_TIMEOUT_SECONDS = 3.0
READY_TIMEOUT_SECONDS = 3.0
FIRST_BACKOFF_SECONDS = 0.2
MAX_IN_FLIGHT = 512  # signals to Temporal at once, across requests (a storm to many agents fans out)


class TemporalUnavailable(AiopsError):
    pass


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


class Connector:
    """Connects to Temporal on first need, so the gateway starts (and says it is not ready) while
    Temporal is down; once connected, the SDK's client reconnects by itself."""

    def __init__(self, connect: Callable[[], Awaitable[AiopsClient]]) -> None:
        self._connect = connect
        self._client: AiopsClient | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, client: AiopsClient) -> Connector:
        async def given() -> AiopsClient:
            return client

        return cls(given)

    async def get(self) -> AiopsClient:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT_SECONDS)
                except Exception as err:
                    raise TemporalUnavailable(f"cannot reach Temporal: {one_line(err)}") from None
        return self._client

    async def not_ready(self) -> str | None:
        """None when Temporal answers its health check; else why not."""
        try:
            client = await self.get()
            await asyncio.wait_for(temporal_check(client.client)(), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            return "Temporal did not answer its health check in time"
        except Exception as err:
            return one_line(err)
        return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


@dataclass
class Failure:
    agent_id: str
    reason: str
    not_running: bool = False


class DeliveredIds:
    """The (agent, event id) pairs this gateway delivered lately: only to count duplicates.

    Duplicates are still delivered (the agent's dedup window is the authority, and
    survives a gateway restart); this memory only tells the metrics what they were.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()

    def seen(self, agent_id: str, event_id: str) -> bool:
        return (agent_id, event_id) in self._ids

    def add(self, agent_id: str, event_id: str) -> None:
        self._ids[(agent_id, event_id)] = None
        self._ids.move_to_end((agent_id, event_id))
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


class Deliverer:
    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def deliver(
        self, batches: dict[str, list[SystemEvent]], configs: dict[str, AgentConfig], settings: Delivery
    ) -> list[Failure]:
        """Send each agent its batch; return the agents whose batch Temporal did not accept."""
        results = await asyncio.gather(
            *(
                self._one(agent_id, events, configs.get(agent_id), settings)
                for agent_id, events in batches.items()
            )
        )
        return [r for r in results if r is not None]

    async def _one(
        self, agent_id: str, events: list[SystemEvent], config: AgentConfig | None, settings: Delivery
    ) -> Failure | None:
        delay = FIRST_BACKOFF_SECONDS
        last = "no attempt made"
        try:
            async with asyncio.timeout(settings.timeout_seconds), self._in_flight:
                for attempt in range(1, settings.attempts + 1):
                    try:
                        aiops = await self.connector.get()
                        # One attempt within the delivery's own retries and deadline: no patience here.
                        await aiops.send_events(
                            agent_id,
                            events,
                            config=config,
                            patience_seconds=0,
                            rpc_timeout_seconds=settings.timeout_seconds,
                        )
                        return None
                    except AgentNotRunningError:
                        return Failure(agent_id, f"agent {agent_id!r} is not running", not_running=True)
                    except ClientError as err:
                        return Failure(agent_id, f"agent {agent_id!r} refused the events: {one_line(err)}")
                    except Exception as err:  # Temporal unreachable, a deadline, a refused signal: retry
                        last = one_line(err)
                        log.info("delivery to %s failed (attempt %d): %s", agent_id, attempt, last)
                    if attempt < settings.attempts:
                        await asyncio.sleep(delay)
                        delay *= 2
        except TimeoutError:
            last = f"Temporal did not accept the events within {settings.timeout_seconds:g}s ({last})"
        return Failure(agent_id, f"delivery to agent {agent_id!r} failed: {last}")
