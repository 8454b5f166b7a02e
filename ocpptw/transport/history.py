# -*- test-case-name: tests.transport.test_history -*-
"""
C{GET /api/v1/chargers/{id}/messages?limit=N&before=CURSOR} (docs/contract.md
section 8): a charger's frames, newest first, a page at a time.

Two sources answer the same way: the embedded store's message log
(L{StoreHistory}, when it keeps one) and the frames held in memory by the
L{ocpptw.services.live.LiveFeed} (L{RingHistory}: REST backend, broker).
A cursor is opaque to clients: C{next} of one page is C{before} of the
next, and it means nothing across the two sources.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.internet.defer import Deferred, succeed

#: Frames per page unless C{limit} says otherwise.
DEFAULT_LIMIT = 50
#: The largest C{limit}.
MAX_LIMIT = 500

_TYPES = {2: "CALL", 3: "CALLRESULT", 4: "CALLERROR"}


class BadQuery(ValueError):
    """
    C{limit} or C{before} is malformed: a 400 whose text names it.
    """


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"m{position}".encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        if not raw.startswith("m") or not raw[1:].isdigit() or len(raw) > 21:
            raise ValueError
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        raise BadQuery("before is not a cursor this API gave out") from None


def parse_query(args: dict[bytes, list[bytes]]) -> tuple[int, int | None]:
    """
    C{(limit, before)} from a request's query arguments.

    @raise BadQuery: for a malformed or too large C{limit}, or a cursor
        that is not one.
    """
    limit = DEFAULT_LIMIT
    raw = args.get(b"limit")
    if raw:
        try:
            limit = int(raw[0])
        except ValueError:
            raise BadQuery("limit must be an integer from 1 to 500") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery("limit must be an integer from 1 to 500")
    before = None
    raw = args.get(b"before")
    if raw and raw[0]:
        before = decode_cursor(raw[0].decode("ascii", "replace"))
    return limit, before


def _page_body(texts: list[str], next_position: int | None) -> bytes:
    following = "null" if next_position is None else json.dumps(encode_cursor(next_position))
    return ('{"messages":[' + ",".join(texts) + '],"next":' + following + "}").encode("utf-8")


class RingHistory:
    """
    Pages from the frames the live feed holds in memory.
    """

    def __init__(self, feed: Any) -> None:
        self._feed = feed

    def page(self, charge_point_id: str, limit: int, before: int | None) -> Deferred[bytes | None]:
        """
        Fires with the page's JSON body, or C{None} for a charger never seen.
        """
        if not self._feed.seen(charge_point_id):
            return succeed(None)
        texts, following = self._feed.page(charge_point_id, before, limit)
        return succeed(_page_body(texts, following))


def row_message(row: tuple[Any, ...]) -> dict[str, Any]:
    """
    One message-log row (C{id, timestamp, direction, message_type,
    message_id, action, payload, error_code}) as a history message.  A
    payload the store cut to C{MESSAGE_LOG_MAX_BYTES} (kept as a JSON
    string) comes back as that string with C{truncated: true}.
    """
    _, timestamp, direction, message_type, message_id, action, payload, error_code = row
    message: dict[str, Any] = {"timestamp": timestamp, "direction": direction,
                               "messageType": _TYPES.get(message_type, message_type), "messageId": message_id}
    if action is not None:
        message["action"] = action
    if error_code is not None:
        message["errorCode"] = error_code
    if payload is not None:
        try:
            message["payload"] = json.loads(payload)
        except ValueError:
            message["payload"] = payload
            message["truncated"] = True
        else:
            if isinstance(message["payload"], str):  # a payload is an object: a string is one the log cut
                message["truncated"] = True
    return message


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


class StoreHistory:
    """
    Pages from the embedded store's message log.

    @param backend: an L{ocpptw.store.embedded.EmbeddedBackend}.
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def page(self, charge_point_id: str, limit: int, before: int | None) -> Deferred[bytes | None]:
        def answer(result: tuple[list[tuple[Any, ...]], bool]) -> bytes | None:
            rows, known = result
            if not known:
                return None
            more = len(rows) > limit
            rows = rows[:limit]
            texts = [_encode(row_message(row)) for row in rows]
            return _page_body(texts, rows[-1][0] if more and rows else None)

        return self._backend.message_page(charge_point_id, before, limit).addCallback(answer)
