# -*- test-case-name: tests.test_logs -*-
"""
Log output: one JSON object a line (C{LOG_FORMAT=json}) or one compact text
line per event, filtered by C{LOG_LEVEL}, with secrets redacted on the way
out, and the stdlib C{logging} of libraries (pika) bridged in.

JSON lines look like::

    {"time": "2026-11-24T10:00:00.000Z", "level": "warn",
     "namespace": "ocpptw.transport.handshake.Gate",
     "message": "refused CP001 from 10.0.0.7: wrong username or authorization key",
     "chargePointId": "CP001", "peer": "10.0.0.7", "reason": "..."}

plus C{traceback} when a failure was logged.  Twisted's C{log_*} internals
are left out.

Text lines are one line per record whatever the fields hold: control
characters are escaped (docs/contract.md section 1).  JSON lines escape them too.

Redaction: a field whose name says it holds a secret (password,
authorization, token, secret, credential, cookie, or a name ending in
C{key} such as C{authorizationKey}) is written as C{***}, in nested
dicts too; C{user:password@} in URLs, C{Basic}/C{Bearer} credentials and
C{password=...} in any text are masked, the message and tracebacks
included, and in C{bytes} fields as in text.

With twistd, C{--logger ocpptw.observability.logs.json_observer_factory} (or
C{text_observer_factory}) selects the observer; L{configure} sets the
level those factories use.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
)
from zope.interface import implementer

from ocpptw.clock import iso_z

MASK = "***"

_SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "credential",
    "cookie",
    "keyhash",
    "privatekey",
    "apikey",
)
# Names that end in "key" but hold no secret: the outbox's per-charger key,
# AMQP routing keys, refund idempotency keys, the path of the TLS key file.
_NOT_SECRET = frozenset({"key", "routingkey", "idempotencykey", "tlskey", "sortkey"})

_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@")
# A credential after the scheme, not a word of a sentence ("missing Basic
# credentials", "a bearer token is required"): the words that follow the
# scheme names in the gateway's own messages are left alone.
_SCHEME_WORDS = (
    "credentials?|tokens?|auth|authentication|authorization|realm|scheme|headers?|passwords?|keys?"
    "|login|is|are|was|required|missing|malformed|invalid|wrong|or|and|the|an?|with|without|over|for|to|in|of|only"
)
_AUTH_HEADER = re.compile(
    r"(?i)\b(basic|bearer|digest)(\s+)"
    rf"(?!(?:{_SCHEME_WORDS})[.,;:!?)]*(?![A-Za-z0-9._~+/=\-]))"
    r"[A-Za-z0-9._~+/=\-]{4,}"
)
_ASSIGNMENT = re.compile(
    r"(?i)\b(password|passwd|secret|token|api[_-]?key|authorization[_-]?key|authorizationKeyHash)"
    r"(\"?'?\s*[:=]\s*\"?'?)([^\s\"'&,;}]+)"
)

#: Keys of a JSON log line that events cannot override.
_RESERVED = frozenset({"time", "level", "namespace", "message", "traceback"})
# Legacy (twisted.python.log) keys that are either internals or already in
# the message.
_LEGACY = frozenset({"message", "format", "time", "isError", "failure", "why", "system", "printed"})


def is_secret_name(name: str) -> bool:
    """
    Whether a field called C{name} holds a secret, by its name.
    """
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    if flat in _NOT_SECRET:
        return False
    return flat.endswith(("key", "keys")) or any(word in flat for word in _SECRET_WORDS)


def redact_text(text: str) -> str:
    """
    C{text} with URL credentials, HTTP credentials and C{password=...}
    style assignments masked.
    """
    if not text:
        return text
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    return _ASSIGNMENT.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """
    C{text} on one line: CR, LF and tab as C{\\r}, C{\\n}, C{\\t}; the
    other C0 and C1 controls, DEL and U+2028/U+2029 as C{\\uXXXX}, so that
    no charger-supplied text can start a line of its own.
    """
    return _CONTROLS.sub(lambda m: _NAMED_CONTROLS.get(m[0]) or "\\u%04x" % ord(m[0]), text)


def redact(value: Any, name: str | None = None) -> Any:
    """
    C{value} made safe to log: masked when C{name} says it is a secret;
    dicts, lists and tuples redacted item by item (including OCPP's
    C{{"key": "AuthorizationKey", "value": ...}} configuration pairs);
    strings cleaned with L{redact_text}.  Other values are returned as
    they are.
    """
    if name is not None and is_secret_name(name) and value not in (None, "", b""):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (bytes, bytearray)):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        out = {k: redact(v, k if isinstance(k, str) else None) for k, v in value.items()}
        pair_key = value.get("key")
        if isinstance(pair_key, str) and is_secret_name(pair_key) and "value" in out:
            out["value"] = MASK
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None  # objects (protocols, requests): not for the log line


def _level_name(event: Mapping[str, Any]) -> str:
    level = event.get("log_level")
    if isinstance(level, type(LogLevel.info)):
        return level.name
    return "error" if event.get("isError") else "info"


def _namespace(event: Mapping[str, Any]) -> str:
    namespace = event.get("log_namespace")
    if not namespace or namespace == "log_legacy":
        namespace = event.get("system") or namespace or "-"
    return str(namespace)


def _time(event: Mapping[str, Any]) -> str:
    seconds = event.get("log_time") or event.get("time") or 0.0
    return iso_z(datetime.fromtimestamp(float(seconds), tz=timezone.utc))


def _message(event: Mapping[str, Any]) -> str:
    """
    The event's text, rendered from its redacted fields, then cleaned.
    """
    safe = {k: (redact(v, k) if not k.startswith("log_") else v) for k, v in event.items()}
    text = formatEvent(safe) if safe.get("log_format") is not None else ""
    if not text:
        legacy = event.get("message")
        if isinstance(legacy, (tuple, list)) and legacy:
            text = " ".join(str(part) for part in legacy)
        elif event.get("why"):
            text = str(event["why"])
    return redact_text(text)


def _traceback(event: Mapping[str, Any]) -> str | None:
    failure = event.get("log_failure") or event.get("failure")
    if failure is None:
        given = event.get("traceback")  # from the stdlib bridge
        return redact_text(given) if isinstance(given, str) else None
    try:
        return redact_text(failure.getTraceback())
    except Exception:  # noqa: BLE001 - a broken failure still gets logged
        return redact_text(repr(failure))


def event_as_dict(event: Mapping[str, Any]) -> dict[str, Any]:
    """
    The JSON log line of C{event}, as a dict.
    """
    line: dict[str, Any] = {
        "time": _time(event),
        "level": _level_name(event),
        "namespace": _namespace(event),
        "message": _message(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _RESERVED or key in _LEGACY or not isinstance(key, str):
            continue
        safe = _jsonable(redact(value, key))
        if safe is not None or value is None:
            line[key] = safe
    traceback = _traceback(event)
    if traceback is not None:
        line["traceback"] = traceback
    return line


def format_json(event: Mapping[str, Any]) -> str:
    """
    One JSON line (no newline) for C{event}.
    """
    return json.dumps(event_as_dict(event), default=str, separators=(",", ":"))


def format_text(event: Mapping[str, Any]) -> str:
    """
    One compact text line for C{event}: C{time [namespace#level] message},
    and C{ | traceback} when a failure was logged.  Control characters
    are escaped (L{escape_controls}): a record is always one line.
    """
    line = f"{_time(event)} [{_namespace(event)}#{_level_name(event)}] {_message(event)}"
    traceback = _traceback(event)
    if traceback:
        line = f"{line} | {traceback.rstrip()}"
    return escape_controls(line)


@implementer(ILogObserver)
class LineObserver:
    """
    Writes each event as one line to C{stream} and flushes (container
    logs must not sit in a buffer).  Never raises: a log line that cannot
    be rendered becomes a short line saying so.
    """

    def __init__(self, stream: IO[str], render: Any) -> None:
        self._stream = stream
        self._render = render

    def __call__(self, event: Mapping[str, Any]) -> None:
        try:
            text = self._render(event)
        except Exception as e:  # noqa: BLE001 - logging must not break the gateway
            text = json.dumps({"level": "error", "message": f"unrenderable log event: {type(e).__name__}"})
        try:
            self._stream.write(text + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full stdout: nowhere left to say it


_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "warning": LogLevel.warn,
           "error": LogLevel.error, "critical": LogLevel.critical}
_defaults: dict[str, Any] = {"level": "info"}


def configure(level: str = "info") -> None:
    """
    Set the level the twistd C{--logger} factories use (C{tap.py} calls
    this with C{LOG_LEVEL}; the factories take no arguments).
    """
    if level.lower() not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    _defaults["level"] = level.lower()


def observer_for(
    config_or_format: Any = "text",
    level: str | None = None,
    stream: IO[str] | None = None,
) -> ILogObserver:
    """
    The observer for a L{ocpptw.config.Config} (its C{log_format} and
    C{log_level}) or for a format name (C{"json"} or C{"text"}).

    @param level: the lowest level written (C{debug}, C{info}, C{warn},
        C{error}); overrides the config's.
    @param stream: where lines go; standard output by default.
    """
    if isinstance(config_or_format, str):
        log_format = config_or_format
    else:
        log_format = config_or_format.log_format
        level = level or config_or_format.log_level
    level = (level or _defaults["level"]).lower()
    if level not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    if log_format not in ("json", "text"):
        raise ValueError(f"unknown log format {log_format!r}")
    render = format_json if log_format == "json" else format_text
    observer = LineObserver(stream or sys.stdout, render)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    chatter = LevelDemotion(_LEVELS[level])
    return FilteringLogObserver(observer, [chatter, predicate])


#: Twisted's own lines about ports and factories ("QuietSite starting on
#: 9000", "(TCP Port 9000 Closed)", "Starting factory <... at 0x...>"):
#: the gateway says what it listens on itself.
_CHATTER = re.compile(r"^(\S+ starting on \d+|\((TCP|UDP|SSL|TLS|UNIX)\S* Port \d+ Closed\)|(Starting|Stopping) factory <.*>)$")


@implementer(ILogFilterPredicate)
class LevelDemotion:
    """
    Treats Twisted's port and factory chatter as C{debug}: written only
    with C{LOG_LEVEL=debug}.
    """

    def __init__(self, level: Any) -> None:
        self._show = level <= LogLevel.debug

    def __call__(self, event: Mapping[str, Any]) -> Any:
        if self._show or event.get("log_level") not in (None, LogLevel.info):
            return PredicateResult.maybe
        text = event.get("log_format")
        if text is None:
            legacy = event.get("message")
            text = " ".join(str(p) for p in legacy) if isinstance(legacy, (tuple, list)) else ""
        elif "{" in text:
            try:
                text = formatEvent(dict(event))
            except Exception:  # noqa: BLE001
                return PredicateResult.maybe
        return PredicateResult.no if _CHATTER.match(text) else PredicateResult.maybe


def twistd_observer(log_format: str, logfile: str = "", nodaemon: bool = False) -> ILogObserver:
    """
    Our observer where twistd would write its log: standard output with
    C{-n} and no C{--logfile} (or C{--logfile -}), else the log file
    (C{twistd.log} when daemonized without one), rotated as twistd rotates
    its own.  Called before twistd forks: the file stays open in the daemon.
    """
    if logfile == "-" or (nodaemon and not logfile):
        return observer_for(log_format)
    from twisted.python.logfile import LogFile

    return observer_for(log_format, stream=LogFile.fromFullPath(logfile or "twistd.log"))


def configure_twistd(log_format: str, logfile: str = "", nodaemon: bool = False) -> None:
    """
    Say where L{twistd_observer_factory} writes (C{tap.py} calls this from
    twistd's options; twistd takes the factory by name, without arguments).
    """
    _defaults["twistd"] = (log_format, logfile, nodaemon)


def twistd_observer_factory() -> ILogObserver:
    """
    For twistd's C{--logger}, as C{tap.py} sets it: L{twistd_observer} as
    L{configure_twistd} said.
    """
    log_format, logfile, nodaemon = _defaults.get("twistd", ("text", "", True))
    return twistd_observer(log_format, logfile, nodaemon)


def json_observer_factory() -> ILogObserver:
    """
    For C{twistd --logger ocpptw.observability.logs.json_observer_factory}: JSON lines on
    standard output.
    """
    return observer_for("json")


def text_observer_factory() -> ILogObserver:
    """
    For C{twistd --logger ocpptw.observability.logs.text_observer_factory}: redacted text
    lines on standard output.
    """
    return observer_for("text")


# -- stdlib logging ------------------------------------------------------------

_STDLIB_LEVELS = {
    logging.DEBUG: LogLevel.debug,
    logging.INFO: LogLevel.info,
    logging.WARNING: LogLevel.warn,
    logging.ERROR: LogLevel.error,
    logging.CRITICAL: LogLevel.critical,
}


class TwistedLogHandler(logging.Handler):
    """
    A stdlib C{logging} handler that re-emits records as C{twisted.logger}
    events in the record's logger name as namespace (twistd's daemon mode
    would otherwise lose them with stderr).
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = _STDLIB_LEVELS.get(record.levelno)
            if level is None:
                level = LogLevel.critical if record.levelno > logging.CRITICAL else LogLevel.info
            fields: dict[str, Any] = {"log_text": record.getMessage()}
            if record.exc_info and record.exc_info[0] is not None:
                fields["traceback"] = logging.Formatter().formatException(record.exc_info)
            Logger(namespace=record.name).emit(level, "{log_text}", **fields)
        except Exception:  # noqa: BLE001 - logging.Handler's own convention
            self.handleError(record)


def bridge_stdlib_logging(level: int = logging.WARNING) -> TwistedLogHandler:
    """
    Send stdlib C{logging} records of C{level} and above (pika logs there)
    into C{twisted.logger}.  Idempotent: a second call returns the handler
    already installed.
    """
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, TwistedLogHandler):
            return handler
    handler = TwistedLogHandler(level)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    logging.getLogger("pika").setLevel(level)
    return handler


def unbridge_stdlib_logging() -> None:
    """
    Remove the handler L{bridge_stdlib_logging} installed (tests).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, TwistedLogHandler):
            root.removeHandler(handler)
