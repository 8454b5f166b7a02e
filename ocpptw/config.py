# -*- test-case-name: tests.test_config -*-
"""
Configuration: defaults < C{.env.ocpp} < environment < C{twistd ocpp}
options, resolved by one pure function.  Nothing here reads a file or the
environment; L{ocpptw.tap} does, and hands the text and mappings in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """
    A configuration value is unknown or malformed.  The message is one line
    naming the variable.
    """


@dataclass(frozen=True)
class Setting:
    """
    One configuration variable: its environment name, attribute, parser,
    default and help text (used by C{twistd ocpp --help}).
    """

    env: str
    attr: str
    parse: Callable[[str, str], Any]
    default: str | None
    help: str
    secret: bool = False

    @property
    def option(self) -> str:
        return self.env.lower().replace("_", "-")


def _int(low: int | None = None, high: int | None = None) -> Callable[[str, str], int]:
    def parse(name: str, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {text!r}") from None
        if low is not None and value < low or high is not None and value > high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    return parse


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be zero or more seconds, got {text!r}")
    return value


def _positive_seconds(name: str, text: str) -> float:
    value = _seconds(name, text)
    if value == 0:
        raise ConfigError(f"{name} must be more than zero seconds, got {text!r}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {text!r}")


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def _text(name: str, text: str) -> str:
    return text.strip()


def _optional_text(name: str, text: str) -> str | None:
    return text.strip() or None


def _url(*schemes: str) -> Callable[[str, str], str | None]:
    def parse(name: str, text: str) -> str | None:
        value = text.strip()
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ConfigError(f"{name} must be a {' or '.join(schemes)} URL, got {text!r}")
        return value.rstrip("/")

    return parse


def _path_prefix(name: str, text: str) -> str:
    value = "/" + text.strip().strip("/")
    if value == "/" or "//" in value or any(c in value for c in "?#% "):
        raise ConfigError(f"{name} must be a path such as /ocpp, got {text!r}")
    return value


def _decimal(name: str, text: str) -> Decimal | None:
    value = text.strip()
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a decimal number, got {text!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{name} must be zero or more, got {text!r}")
    return amount


_rate = _int(0, 1000000)


def _accept_rate(name: str, text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return _rate(name, text)
    except ConfigError as e:
        raise ConfigError(f"{e} (or auto)") from None


def _share(name: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number between 0 and 1, got {text!r}") from None
    if not 0 < value <= 1:
        raise ConfigError(f"{name} must be more than 0 and at most 1, got {text!r}")
    return value


def _csv(name: str, text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _networks(name: str, text: str) -> tuple[str, ...]:
    import ipaddress

    entries = _csv(name, text)
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"{name} must list IP addresses or networks, got {entry!r}") from None
    return entries


#: The subprotocols OCPP_VERSIONS may list.
SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")


def _subprotocols(name: str, text: str) -> tuple[str, ...]:
    chosen = _csv(name, text)
    if not chosen:
        raise ConfigError(f"{name} must list at least one of {', '.join(SUBPROTOCOLS)}")
    for part in chosen:
        if part not in SUBPROTOCOLS:
            raise ConfigError(f"{name} lists {part!r}; the gateway speaks {', '.join(SUBPROTOCOLS)}")
    return tuple(dict.fromkeys(chosen))


SETTINGS: tuple[Setting, ...] = (
    Setting("PORT", "port", _int(0, 65535), "9000", "port for chargers and the HTTP endpoints"),
    Setting("WEBSOCKET_HOST", "host", _text, "0.0.0.0", "interface to bind"),
    Setting("BACKEND_API_URL", "backend_url", _url("http", "https"), "", "backend base URL; unset means the embedded store"),
    Setting("BACKEND_API_TOKEN", "backend_token", _optional_text, "", "bearer token sent to the backend", secret=True),
    Setting("BACKEND_TIMEOUT", "backend_timeout", _positive_seconds, "10", "seconds any one backend request may take"),
    Setting("BACKEND_MESSAGE_BATCH", "backend_message_batch", _int(1, 1000), "1", "most OCPP messages of one charger per request to the backend; 1 is the contract's POST .../ocpp-message, more uses POST .../ocpp-messages"),
    Setting("ENABLE_RABBITMQ", "enable_rabbitmq", _bool, "false", "publish events / consume commands through RabbitMQ"),
    Setting("RABBITMQ_URL", "rabbitmq_url", _url("amqp", "amqps"), "amqp://guest:guest@localhost:5672", "broker", secret=True),
    Setting("RABBITMQ_EXCHANGE", "rabbitmq_exchange", _text, "ocpp.events", "topic exchange for events"),
    Setting("RABBITMQ_COMMAND_EXCHANGE", "rabbitmq_command_exchange", _text, "ocpp.commands", "direct exchange for commands"),
    Setting("DATA_DIR", "data_dir", _text, "./data", "embedded store and local outbox"),
    Setting("OCPP_PATH", "ocpp_path", _path_prefix, "/ocpp", "base path of the charger URL"),
    Setting("OCPP_CALL_TIMEOUT", "call_timeout", _positive_seconds, "30", "seconds a server-to-charger call waits"),
    Setting("OCPP_PING_INTERVAL", "ping_interval", _seconds, "60", "seconds between WebSocket pings, 0 off"),
    Setting("OCPP_VALIDATION", "validation", _choice("strict", "lenient"), "strict", "strict or lenient schema validation"),
    Setting("OCPP_ALLOW_UNKNOWN_CHARGERS", "allow_unknown_chargers", _bool, "true", "register unknown chargers on boot, or refuse with 404"),
    Setting("OCPP_VERSIONS", "ocpp_versions", _subprotocols, "ocpp2.0.1,ocpp1.6", "enabled subprotocols, comma-separated (ocpp2.0.1, ocpp1.6)"),
    Setting("OCPP_ALLOW_MISSING_SUBPROTOCOL", "allow_missing_subprotocol", _bool, "false", "admit chargers that offer no subprotocol at all"),
    Setting("OCPP_SECURITY_PROFILE", "security_profile", _int(0, 3), "0", "0 none, 1 basic auth, 2 TLS + basic auth, 3 TLS client certificates"),
    Setting("HEARTBEAT_INTERVAL", "heartbeat_interval", _int(1, 86400), "300", "interval returned in BootNotification"),
    Setting("BACKEND_START_DEADLINE", "start_deadline", _positive_seconds, "5", "seconds StartTransaction waits for the backend"),
    Setting("OUTBOX_MAX_AGE", "outbox_max_age", _positive_seconds, "86400", "seconds a failing outbox entry is retried before it is parked"),
    Setting("OUTBOX_ALARM_DEPTH", "outbox_alarm_depth", _int(1, None), "100000", "outbox entries waiting above which an alarm is logged and ocpp_outbox_alarm is 1"),
    Setting("OUTBOX_ALARM_AGE", "outbox_alarm_age", _positive_seconds, "3600", "seconds the oldest outbox entry may wait before the alarm"),
    Setting("OUTBOX_RETRY_MAX", "outbox_retry_max", _positive_seconds, "60", "longest wait between two tries of a failing outbox entry"),
    Setting("BACKEND_CIRCUIT_COOLDOWN", "circuit_cooldown", _positive_seconds, "10", "seconds the backend circuit stays open before a probe"),
    Setting("OCPP_MAX_FRAME_BYTES", "max_frame_bytes", _int(1024, 64 * 1024 * 1024), "1048576", "largest frame accepted; larger closes with 1009"),
    Setting("AUTH_CACHE_TTL", "auth_cache_ttl", _seconds, "3600", "seconds an Authorize answer may be reused while the backend is down"),
    Setting("LOG_FORMAT", "log_format", _choice("text", "json"), "text", "text or json"),
    Setting("LOG_LEVEL", "log_level", _choice("debug", "info", "warn", "error"), "info", "lowest level logged"),
    Setting("TLS_CERT", "tls_cert", _optional_text, "", "PEM certificate (chain) for wss"),
    Setting("TLS_KEY", "tls_key", _optional_text, "", "PEM private key for wss"),
    Setting("TLS_CA", "tls_ca", _optional_text, "", "PEM CA bundle; enables client certificates"),
    Setting("TLS_PORT", "tls_port", _int(0, 65535), "", "port for wss when it should differ from PORT (default: PORT serves wss)"),
    Setting("HTTP_PORT", "http_port", _int(0, 65535), "", "plain HTTP port of its own for /health, /ready, /metrics and the API, never queued behind a connection storm (default: they are served on PORT)"),
    Setting("CLIENT_CERT_HEADER", "client_cert_header", _optional_text, "", "header in which a TLS-terminating proxy forwards the client certificate"),
    Setting("TRUSTED_PROXIES", "trusted_proxies", _networks, "", "comma-separated addresses (or networks) of proxies whose forwarded client certificates and client addresses (X-Forwarded-For) are trusted"),
    Setting("ADMIN_API_TOKEN", "admin_token", _optional_text, "", "bearer token for the command and admin API", secret=True),
    Setting("INSTANCE_ID", "instance_id", _text, "", "this instance's name in events and charger lists (default: host name)"),
    Setting("INSTANCE_SLOT", "instance_slot", _int(0, 1023), "", "0-1023, part of transactionIds the gateway assigns (default: from INSTANCE_ID)"),
    Setting("WORKERS", "workers", _int(1, 256), "1", "worker processes that share the ports, each with its own reactor (one per core); 1 runs the gateway in this one process"),
    Setting("HANDSHAKE_CONCURRENCY", "handshake_concurrency", _int(1, 100000), "256", "WebSocket handshakes in progress at once; more get 503"),
    Setting("HANDSHAKE_RATE_PER_IP", "handshake_rate_per_ip", _int(0, 1000000), "0", "handshakes per second from one address, 0 no limit"),
    Setting("MAX_CONNECTIONS_PER_IP", "max_connections_per_ip", _int(0, 10000000), "0", "open connections from one address, 0 no limit (chargers behind one NAT share an address)"),
    Setting("MESSAGE_LOG_MAX_BYTES", "message_log_max_bytes", _int(1024, 64 * 1024 * 1024), "65536", "largest payload kept in the message log; longer ones are kept truncated and marked"),
    Setting("MESSAGE_LOG_MAX_TOTAL_BYTES", "message_log_max_total_bytes", _int(1024 * 1024, None), "1073741824", "bound of the embedded store's whole message log; the oldest rows go first"),
    Setting("ACCEPT_PER_TURN", "accept_per_turn", _int(1, 10000), "1", "connections accepted per reactor turn; the rest wait in the listen queue"),
    Setting("ACCEPT_RATE", "accept_rate", _accept_rate, "auto", "connections accepted per second: auto paces a storm so that it takes about ACCEPT_CPU_SHARE of a core (within ACCEPT_MAX_WAIT), a number fixes it, 0 no limit but ACCEPT_PER_TURN"),
    Setting("ACCEPT_MAX_WAIT", "accept_max_wait", _positive_seconds, "30", "with ACCEPT_RATE=auto: seconds a connection should wait in the listen queue at most; a longer queue is accepted faster, whatever it costs"),
    Setting("ACCEPT_CPU_SHARE", "accept_cpu_share", _share, "0.25", "with ACCEPT_RATE=auto: share of one CPU core new connections may take in a storm, on top of the connected chargers' load"),
    Setting("LISTEN_BACKLOG", "listen_backlog", _int(1, 65535), "4096", "connections the kernel queues before they are accepted"),
    Setting("GC_YOUNG_INTERVAL", "gc_young_interval", _seconds, "0.1", "seconds between collections of young objects, which then are frozen; 0 leaves Python's collector as it is"),
    Setting("GC_FULL_INTERVAL", "gc_full_interval", _seconds, "900", "seconds between full garbage collections (with GC_YOUNG_INTERVAL), 0 none"),
    Setting("DRAIN_GRACE", "drain_grace", _seconds, "20", "seconds the SIGTERM drain may take"),
    Setting("EMBEDDED_PRICE_PER_KWH", "embedded_price", _decimal, "", "embedded store: tariff per kWh (unset: no billing)"),
    Setting("EMBEDDED_CURRENCY", "embedded_currency", _text, "EUR", "embedded store: currency of the tariff"),
    Setting("EMBEDDED_LOG_RETENTION", "embedded_log_retention", _seconds, "604800", "embedded store: seconds the message log and events are kept, 0 forever"),
    Setting("MESSAGE_HISTORY_SIZE", "message_history_size", _int(1, 100000), "200", "frames per charger kept in memory for the history API when the store keeps no message log (REST backend, broker)"),
    Setting("EMBEDDED_AUTH_MODE", "embedded_auth_mode", _choice("open", "allowlist"), "open", "embedded store: accept every idTag but blocked ones, or only listed ones"),
)

_BY_ENV = {s.env: s for s in SETTINGS}

#: Prefixes of the gateway's own variables (docs/contract.md section 2): a variable
#: in the environment with one of them that is no setting is a typo, and
#: stops the start.  Generic ones (C{HTTP_}, C{LOG_}, C{DATA_}) are left
#: out: other software sets C{HTTP_PROXY} and the like.
GUARDED_PREFIXES = (
    "OCPP_",
    "BACKEND_",
    "RABBITMQ_",
    "TLS_",
    "ADMIN_",
    "OUTBOX_",
    "EMBEDDED_",
    "HANDSHAKE_",
    "ACCEPT_",
    "INSTANCE_",
    "DRAIN_",
    "GC_",
    "WORKER",
)

#: What Kubernetes injects for every Service of the namespace (service
#: links): C{RABBITMQ_PORT=tcp://...}, C{BACKEND_SERVICE_HOST}, ...; never
#: a typo of a setting.
_SERVICE_LINK = re.compile(r"^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$")

#: Values that are a template's placeholder, never a real secret.
PLACEHOLDERS = frozenset(
    {"change-me", "changeme", "change_me", "change-it", "changeit", "replace-me", "replaceme", "todo", "xxx", "secret", "password", "token", "<token>", "..."}
)


def closest_setting(name: str) -> str | None:
    """
    The setting whose name is closest to C{name}, or C{None}.
    """
    import difflib

    found = difflib.get_close_matches(name, list(_BY_ENV), n=1, cutoff=0.6)
    return found[0] if found else None


def _not_a_setting(name: str, where: str) -> ConfigError:
    closest = closest_setting(name)
    hint = f"; did you mean {closest}?" if closest else "; docs/operations.md lists the settings"
    return ConfigError(f"{where} sets unknown variable {name}{hint}")


def typos_in(environ: Mapping[str, str]) -> list[str]:
    """
    The names in C{environ} that carry one of L{GUARDED_PREFIXES} but are
    no setting (Kubernetes service links excepted), sorted.
    """
    return sorted(
        name
        for name in environ
        if name.startswith(GUARDED_PREFIXES) and name not in _BY_ENV and not _SERVICE_LINK.match(name)
    )


@dataclass(frozen=True)
class Config:
    """
    The resolved configuration.  Build it with L{load_config}.
    """

    port: int = 9000
    host: str = "0.0.0.0"
    backend_url: str | None = None
    backend_token: str | None = None
    backend_timeout: float = 10.0
    backend_message_batch: int = 1
    enable_rabbitmq: bool = False
    rabbitmq_url: str | None = "amqp://guest:guest@localhost:5672"
    rabbitmq_exchange: str = "ocpp.events"
    rabbitmq_command_exchange: str = "ocpp.commands"
    data_dir: str = "./data"
    ocpp_path: str = "/ocpp"
    call_timeout: float = 30.0
    ping_interval: float = 60.0
    validation: str = "strict"
    allow_unknown_chargers: bool = True
    allow_missing_subprotocol: bool = False
    ocpp_versions: tuple[str, ...] = ("ocpp2.0.1", "ocpp1.6")
    security_profile: int = 0
    heartbeat_interval: int = 300
    start_deadline: float = 5.0
    outbox_max_age: float = 86400.0
    outbox_retry_max: float = 60.0
    circuit_cooldown: float = 10.0
    outbox_alarm_depth: int = 100000
    outbox_alarm_age: float = 3600.0
    max_frame_bytes: int = 1048576
    auth_cache_ttl: float = 3600.0
    log_format: str = "text"
    log_level: str = "info"
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_port: int | None = None
    http_port: int | None = None
    client_cert_header: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    admin_token: str | None = None
    instance_id: str = "ocpptw"
    instance_slot: int = 0
    workers: int = 1
    handshake_concurrency: int = 256
    handshake_rate_per_ip: int = 0
    max_connections_per_ip: int = 0
    message_log_max_bytes: int = 65536
    message_log_max_total_bytes: int = 1073741824
    accept_per_turn: int = 1
    accept_rate: int | None = None
    accept_cpu_share: float = 0.25
    accept_max_wait: float = 30.0
    listen_backlog: int = 4096
    gc_young_interval: float = 0.1
    gc_full_interval: float = 900.0
    drain_grace: float = 20.0
    embedded_price: Decimal | None = None
    embedded_currency: str = "EUR"
    embedded_auth_mode: str = "open"
    embedded_log_retention: float = 604800.0
    message_history_size: int = 200

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def warnings(self) -> list[str]:
        """
        Settings that work but that an operator should not run with, one
        line each, logged at start.
        """
        out = []
        if self.security_profile == 1 and not self.tls:
            out.append(
                "OCPP_SECURITY_PROFILE=1 without TLS: chargers send their keys in clear text over ws://; "
                "use profile 2 (TLS_CERT, TLS_KEY) unless a TLS terminator sits in front"
            )
        return out

    def redacted(self) -> dict[str, str]:
        """
        Every setting as an operator writes it (C{ACCEPT_RATE: auto},
        C{unset}, C{true}), secrets masked, for the start-up log line.
        """
        out: dict[str, str] = {}
        for s in SETTINGS:
            value = getattr(self, s.attr)
            if s.secret and value:
                value = _mask_url(value) if s.env == "RABBITMQ_URL" else "***"
            out[s.env] = _shown(s.env, value)
        return out


def _shown(env: str, value: Any) -> str:
    if value is None:
        return "auto" if env == "ACCEPT_RATE" else "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(value) or "unset"
    return str(value)


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def parse_dotenv(text: str) -> dict[str, str]:
    """
    Parse C{.env} text: C{NAME=value} lines, C{#} comments, optional
    C{export }, single or double quotes.

    @raise ConfigError: for a line that is not an assignment.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ConfigError(f".env.ocpp line {number} is not NAME=value: {raw.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def slot_of(instance_id: str) -> int:
    """
    The default C{INSTANCE_SLOT} of an instance: a hash of its id, 0-1023.
    """
    digest = hashlib.sha256(instance_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:2], "big") % 1024


def load_config(
    dotenv_text: str = "",
    environ: Mapping[str, str] | None = None,
    cli: Mapping[str, str] | None = None,
    hostname: str = "ocpptw",
) -> Config:
    """
    Resolve the configuration.  Pure: the caller reads C{.env.ocpp} and the
    environment.

    @param dotenv_text: the text of C{.env.ocpp} (empty when absent).  An
        unknown name in it is an error: a typo there would go unnoticed.
    @param environ: the process environment; only the known names are read.
    @param cli: C{twistd ocpp} options, keyed by environment name.  An
        unknown name is an error.
    @param hostname: the default C{INSTANCE_ID}.
    @raise ConfigError: one line naming the variable.
    """
    dotenv = parse_dotenv(dotenv_text)
    for name in dotenv:
        if name not in _BY_ENV:
            raise _not_a_setting(name, ".env.ocpp")
    for name in typos_in(environ or {}):
        raise _not_a_setting(name, "the environment")
    for name in cli or {}:
        if name not in _BY_ENV:
            raise ConfigError(f"unknown option for {name}")
    values: dict[str, Any] = {}
    for s in SETTINGS:
        text = s.default
        given = False
        for layer in (dotenv, environ or {}, cli or {}):
            if s.env in layer:
                text = layer[s.env]
                given = True
        if s.attr == "instance_slot" and given and not (text or "").strip():
            # Older clusters have no pod-index label and hand an empty
            # value: a slot hashed from the name could collide.
            raise ConfigError(
                "INSTANCE_SLOT is set but empty (the pod-index label needs Kubernetes 1.28 or later): "
                "set it to a number 0-1023 unique per instance, or remove it"
            )
        if text is None or (text == "" and s.attr in {"tls_port", "http_port", "instance_slot", "instance_id"}):
            continue
        values[s.attr] = s.parse(s.env, text)
    if not values.get("instance_id"):
        values["instance_id"] = hostname
    if "instance_slot" not in values:
        values["instance_slot"] = slot_of(values["instance_id"])
    config = Config(**values)
    _check(config)
    return config


def _check(config: Config) -> None:
    for env, value in (("ADMIN_API_TOKEN", config.admin_token), ("BACKEND_API_TOKEN", config.backend_token)):
        if value is not None and value.strip().lower() in PLACEHOLDERS:
            raise ConfigError(f"{env} is a template's placeholder: set a real secret or leave it unset")
    if config.rabbitmq_url is not None:
        password = urlsplit(config.rabbitmq_url).password
        if password is not None and password.lower() in PLACEHOLDERS:
            raise ConfigError("RABBITMQ_URL has a placeholder password: set the broker's real one")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("TLS_CERT and TLS_KEY must be set together")
    if config.tls_ca is not None and config.tls_cert is None:
        raise ConfigError("TLS_CA needs TLS_CERT and TLS_KEY (client certificates need wss)")
    if config.security_profile in (2, 3) and not config.tls:
        raise ConfigError(f"OCPP_SECURITY_PROFILE={config.security_profile} needs TLS_CERT and TLS_KEY")
    if config.security_profile == 3 and config.tls_ca is None and config.client_cert_header is None:
        raise ConfigError("OCPP_SECURITY_PROFILE=3 needs TLS_CA (or CLIENT_CERT_HEADER behind a proxy)")
    if config.client_cert_header is not None and not config.trusted_proxies:
        raise ConfigError("CLIENT_CERT_HEADER needs TRUSTED_PROXIES: the header is trusted only from them")
    if config.http_port and config.http_port in (config.port, config.tls_port):
        raise ConfigError(f"HTTP_PORT must differ from PORT and TLS_PORT, got {config.http_port}")
    if config.workers > 1 and 0 in (config.port, config.http_port, config.tls_port):
        raise ConfigError("WORKERS above 1 needs fixed ports: PORT, HTTP_PORT and TLS_PORT cannot be 0")
    if config.enable_rabbitmq and config.rabbitmq_url is None:
        raise ConfigError("ENABLE_RABBITMQ=true needs RABBITMQ_URL")

