# -*- test-case-name: tests.transport.test_console -*-
"""
Builds the operator console's parts for the gateway's wiring, so that the
wiring only calls two functions: L{live_feed} before the sessions exist,
L{build_console} once the command API does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ocpptw.config import Config


@dataclass(frozen=True)
class Console:
    """
    The console's parts.

    @ivar feed: the L{ocpptw.services.live.LiveFeed}.
    @ivar hub: the L{ocpptw.transport.stream.StreamHub}, a service.
    @ivar api: the C{/api/v1} resource: the console's paths in front of the
        command API.
    @ivar files: the C{/console} resource.
    """

    feed: Any
    hub: Any
    api: Any
    files: Any


def store_keeps_log(config: Config, backend: Any) -> bool:
    """
    Whether frames land in the embedded store's message log (no broker, no
    REST backend), so the history API reads them there.
    """
    from ocpptw.interfaces import IMessageLog

    return not config.enable_rabbitmq and not config.backend_url and IMessageLog.providedBy(backend)


def live_feed(
    config: Config, reactor: Any, registry: Any, recorder: Any, backend: Any, accepted: Any = None
) -> tuple[Any, Any]:
    """
    The L{ocpptw.services.live.LiveFeed} and the session observer that
    feeds it along with C{recorder}.

    @param accepted: C{(chargePointId) -> bool}, whether a charger is
        accepted (its frames other than boots are kept only then).
    """
    from ocpptw.services.live import LiveFeed, Tee

    keeps = store_keeps_log(config, backend)
    feed = LiveFeed(reactor, registry, history_size=0 if keeps else config.message_history_size,
                    max_payload=config.message_log_max_bytes, accepted=accepted)
    return feed, Tee(recorder, feed)


def build_console(config: Config, reactor: Any, api: Any, feed: Any, backend: Any, outbox: Any, metrics: Any) -> Console:
    """
    The console's API in front of the command API C{api}, its stream hub
    and its files.
    """
    from ocpptw.transport.console import ConsoleApi, ConsoleFiles
    from ocpptw.transport.history import RingHistory, StoreHistory
    from ocpptw.transport.stream import StreamHub

    history = StoreHistory(backend) if store_keeps_log(config, backend) else RingHistory(feed)
    hub = StreamHub(feed, reactor)
    hub.watch(metrics)
    routed = ConsoleApi(api, feed, history, hub, outbox, instance=config.instance_id, backend=backend)
    return Console(feed, hub, routed, ConsoleFiles(api))
