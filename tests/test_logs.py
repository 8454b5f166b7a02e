"""
Tests for L{ocpptw.observability.logs}: JSON and text lines, level filtering, redaction
everywhere, twistd's logger factories and the stdlib logging bridge.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from twisted.logger import Logger, LogLevel, LogPublisher

from ocpptw.config import load_config
from ocpptw.observability.logs import (
    MASK,
    bridge_stdlib_logging,
    configure,
    format_text,
    is_secret_name,
    json_observer_factory,
    observer_for,
    redact,
    redact_text,
    text_observer_factory,
    unbridge_stdlib_logging,
)


def capture(fmt="json", level="debug"):
    """
    A private publisher whose events go through C{observer_for} into a
    buffer; returns (logger, buffer).
    """
    stream = io.StringIO()
    publisher = LogPublisher(observer_for(fmt, level, stream))
    return Logger(namespace="ocpptw.test", observer=publisher), stream


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_shape():
    """One object a line: time with Z, level, namespace, message, simple fields; no log_ internals."""
    log, stream = capture()
    log.info(
        "Heartbeat from {chargePointId}",
        chargePointId="CP1",
        messageId="m-1",
        action="Heartbeat",
        count=3,
        ratio=0.5,
        flag=True,
        nothing=None,
        protocol=object(),
    )
    [line] = lines(stream)
    assert line["time"].endswith("Z") and "T" in line["time"]
    assert line["level"] == "info"
    assert line["namespace"] == "ocpptw.test"
    assert line["message"] == "Heartbeat from CP1"
    assert (line["chargePointId"], line["messageId"], line["action"]) == ("CP1", "m-1", "Heartbeat")
    assert (line["count"], line["ratio"], line["flag"], line["nothing"]) == (3, 0.5, True, None)
    assert "protocol" not in line
    assert not any(key.startswith("log_") for key in line)


def test_json_failure_has_traceback():
    """A logged failure carries its traceback in its own field."""
    log, stream = capture()
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.failure("handler crashed for {chargePointId}", chargePointId="CP9")
    [line] = lines(stream)
    assert line["level"] == "critical"
    assert line["message"] == "handler crashed for CP9"
    assert "ZeroDivisionError" in line["traceback"]


def test_level_filtering():
    """Events below the configured level are dropped."""
    log, stream = capture(level="warn")
    log.debug("debug")
    log.info("info")
    log.warn("warn")
    log.error("error")
    assert [line["level"] for line in lines(stream)] == ["warn", "error"]


def test_observer_from_config():
    """A Config picks format and level."""
    stream = io.StringIO()
    observer = observer_for(load_config(environ={"LOG_FORMAT": "json", "LOG_LEVEL": "error"}), stream=stream)
    log = Logger(namespace="x", observer=LogPublisher(observer))
    log.warn("dropped")
    log.error("kept")
    assert [line["message"] for line in lines(stream)] == ["kept"]


def test_text_line():
    """Text lines are compact: time, namespace#level, message; a traceback follows a failure."""
    log, stream = capture("text")
    log.warn("bad frame from {chargePointId}", chargePointId="CP1")
    [line] = stream.getvalue().splitlines()
    assert line.endswith("[ocpptw.test#warn] bad frame from CP1")
    assert line[:4].isdigit() and "Z [" in line


@pytest.mark.parametrize(
    "name",
    ["password", "authorization", "Authorization", "token", "adminToken", "ADMIN_API_TOKEN", "secret",
     "authorizationKey", "apiKey", "authorizationKeyHash", "privateKey", "client_secret", "cookie"],
)
def test_secret_names(name):
    """Fields named like secrets are recognised."""
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["chargePointId", "key", "routing_key", "idempotencyKey", "TLS_KEY", "reason", "keyboard"])
def test_non_secret_names(name):
    """Ordinary fields, and key-named fields that hold no secret, are kept."""
    assert not is_secret_name(name)


def test_redaction_everywhere():
    """Secrets never reach the line: fields, nested dicts, URLs, headers, OCPP key pairs, the message."""
    log, stream = capture()
    log.warn(
        "connecting to {url} with {authorization} and {password}",
        url="amqp://guest:hunter2@broker:5672/%2F",
        authorization="Basic Q1AxOnMzY3JldA==",
        password="hunter2",
        headers={"Authorization": "Bearer abcdef123456", "host": "gw"},
        payload={"key": "AuthorizationKey", "value": "0123456789abcdef"},
        note="retry with token=abc123def and password: opensesame",
        settings={"ADMIN_API_TOKEN": "t0k3n", "PORT": 9000},
    )
    raw = stream.getvalue()
    for secret in ("hunter2", "Q1AxOnMzY3JldA", "abcdef123456", "0123456789abcdef", "abc123def", "opensesame", "t0k3n"):
        assert secret not in raw, secret
    [line] = lines(stream)
    assert line["url"] == f"amqp://guest:{MASK}@broker:5672/%2F"
    assert line["authorization"] == MASK
    assert line["headers"] == {"Authorization": MASK, "host": "gw"}
    assert line["payload"] == {"key": "AuthorizationKey", "value": MASK}
    assert line["settings"] == {"ADMIN_API_TOKEN": MASK, "PORT": 9000}
    assert line["message"] == f"connecting to amqp://guest:{MASK}@broker:5672/%2F with {MASK} and {MASK}"


def test_redaction_in_tracebacks_and_text_format():
    """A URL with credentials inside an exception message is masked in both formats."""
    for fmt in ("json", "text"):
        log, stream = capture(fmt)
        try:
            raise ConnectionError("cannot reach https://admin:pa55word@backend.example/api")
        except ConnectionError:
            log.failure("backend unreachable")
        assert "pa55word" not in stream.getvalue()
        assert f"admin:{MASK}@backend.example" in stream.getvalue()


def test_redact_helpers():
    """redact() keeps non-secrets and structure; redact_text() leaves plain text alone."""
    assert redact({"a": [1, {"token": "x"}], "b": ("y",)}) == {"a": [1, {"token": MASK}], "b": ("y",)}
    assert redact("no secrets here") == "no secrets here"
    assert redact(42, "apiKey") == MASK
    assert redact("", "password") == ""
    assert redact_text("http://example.com/path") == "http://example.com/path"
    assert redact_text("Authorization: Bearer xyz.abc.def") == f"Authorization: Bearer {MASK}"


def test_unrenderable_event_does_not_raise():
    """A broken format string gives a line, never an exception in the observer."""
    stream = io.StringIO()
    observer = observer_for("json", "debug", stream)
    observer({"log_format": "{missing", "log_level": LogLevel.info, "log_namespace": "x", "log_time": 0.0})
    assert len(stream.getvalue().splitlines()) == 1


def test_legacy_events_render():
    """twisted.python.log style events (no level, message tuple) still make a line."""
    stream = io.StringIO()
    observer = observer_for("json", "debug", stream)
    observer({"message": ("legacy", "hello"), "isError": 0, "system": "HTTPChannel,1", "time": 0.0,
              "log_level": LogLevel.info, "log_time": 0.0, "log_namespace": "log_legacy"})
    [line] = lines(stream)
    assert line["message"] == "legacy hello"
    assert line["namespace"] == "HTTPChannel,1"


def test_twistd_factories_and_configure(capsys):
    """The dotted factories write to stdout at the configured level."""
    configure("warn")
    try:
        for factory, check in ((json_observer_factory, json.loads), (text_observer_factory, str)):
            log = Logger(namespace="t", observer=LogPublisher(factory()))
            log.info("hidden")
            log.warn("shown {x}", x=1)
            out = capsys.readouterr().out.splitlines()
            assert len(out) == 1 and "shown 1" in out[0]
            check(out[0])
    finally:
        configure("info")
    with pytest.raises(ValueError):
        configure("loud")
    with pytest.raises(ValueError):
        observer_for("xml")


def test_stdlib_bridge_at_warning(fail_on_logged_errors):
    """pika's stdlib records of WARNING and above reach twisted.logger, redacted; INFO does not."""
    from twisted.logger import globalLogPublisher

    seen = []
    globalLogPublisher.addObserver(seen.append)
    handler = bridge_stdlib_logging()
    try:
        assert bridge_stdlib_logging() is handler
        pika = logging.getLogger("pika.connection")
        pika.info("chatty")
        pika.warning("returned message for %s", "amqp://u:secretpw@h/")
        try:
            raise ValueError("bad frame")
        except ValueError:
            pika.error("channel closed", exc_info=True)
    finally:
        unbridge_stdlib_logging()
        globalLogPublisher.removeObserver(seen.append)
    ours = [e for e in seen if e.get("log_namespace", "").startswith("pika")]
    assert [e["log_level"] for e in ours] == [LogLevel.warn, LogLevel.error]
    assert ours[0]["log_namespace"] == "pika.connection"
    rendered = format_text(ours[0])
    assert "secretpw" not in rendered and "returned message for" in rendered
    assert "ValueError: bad frame" in format_text(ours[1])
    fail_on_logged_errors.clear()  # the bridged ERROR record is expected
    assert not any(isinstance(h, type(handler)) for h in logging.getLogger().handlers)


FORGED_ACTION = "Foo\n2026-11-24T10:00:00.000Z [ocpptw.transport.handshake.Gate#warn] refused CP001"


@pytest.mark.parametrize(
    "text",
    [FORGED_ACTION, "id\r\n2026-11-24T10:00:00.000Z [x#info] forged", "a\x85b", "a\u2028b", "a\u2029b", "a\x1b[2Kb", "a\rb", "a\x0bb\x0cc"],
)
def test_finding_7_charger_text_never_forges_a_text_log_line(text):
    """An action or message id with CR, LF, C0/C1 controls or U+2028/2029 stays on its record's one line, escaped."""
    log, stream = capture("text")
    log.warn("{action} {messageId} from {chargePointId} refused", action=text, messageId=text, chargePointId="CP1")
    written = stream.getvalue()
    assert written.count("\n") == 1 and written.endswith("\n")
    assert not any(c in written[:-1] for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x1b")
    assert written[:-1].splitlines() == [written[:-1]]
    if "\n" in text:
        assert "Foo\\n2026" in written or "id\\r\\n2026" in written
    if "\x85" in text:
        assert "a\\u0085b" in written


def test_finding_7_a_failure_is_one_line_too():
    """A traceback (whose exception text may carry charger text) follows on the same line, escaped."""
    log, stream = capture("text")
    try:
        raise ValueError("bad\nforged line")
    except ValueError:
        log.failure("handling {action} failed", action="Heartbeat")
    written = stream.getvalue()
    assert written.count("\n") == 1
    assert "handling Heartbeat failed | Traceback" in written and "ValueError: bad\\nforged line" in written


def test_finding_7_json_lines_escape_line_separators():
    """JSON lines stay one line for U+2028/U+2029 and controls too."""
    log, stream = capture("json")
    log.warn("{action}", action="a\u2028b\u2029c\x85d\ne")
    assert stream.getvalue().count("\n") == 1
    assert lines(stream)[0]["action"] == "a\u2028b\u2029c\x85d\ne"
    assert "\u2028" not in stream.getvalue() and "\x85" not in stream.getvalue()


def test_finding_11_bytes_fields_are_redacted_in_json_lines():
    """A bytes field gets the same redaction as text: credentials inside are masked, secret names masked whole."""
    log, stream = capture("json")
    log.info(
        "headers {header}",
        header=b"Authorization: Basic dXNlcjpzZWNyZXQ=",
        url=b"amqp://guest:hunter2@broker:5672/",
        nested={"raw": [b"password=hunter2"]},
        authorizationKey=b"0123456789abcdef",
    )
    [line] = lines(stream)
    text = stream.getvalue()
    assert "dXNlcjpzZWNyZXQ" not in text and "hunter2" not in text and "0123456789abcdef" not in text
    assert line["header"] == f"Authorization: Basic {MASK}"
    assert line["url"] == f"amqp://guest:{MASK}@broker:5672/"
    assert line["nested"] == {"raw": [f"password={MASK}"]}
    assert line["authorizationKey"] == MASK
    assert redact(b"Bearer abcdefgh") == f"Bearer {MASK}"
