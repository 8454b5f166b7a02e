"""
Tests for L{ocpptw.config}: the layering and the one-line errors.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from ocpptw.config import SETTINGS, Config, ConfigError, load_config, parse_dotenv


def test_defaults_match_the_contract():
    """With nothing set, every value is the contract's default."""
    c = load_config("", {}, {}, hostname="gw1")
    assert (c.port, c.host, c.backend_url, c.enable_rabbitmq) == (9000, "0.0.0.0", None, False)
    assert c.rabbitmq_url == "amqp://guest:guest@localhost:5672"
    assert (c.rabbitmq_exchange, c.rabbitmq_command_exchange) == ("ocpp.events", "ocpp.commands")
    assert (c.data_dir, c.ocpp_path, c.call_timeout, c.ping_interval) == ("./data", "/ocpp", 30.0, 60.0)
    assert (c.validation, c.allow_unknown_chargers, c.allow_missing_subprotocol) == ("strict", True, False)
    assert (c.security_profile, c.heartbeat_interval, c.start_deadline) == (0, 300, 5.0)
    assert (c.outbox_max_age, c.max_frame_bytes, c.auth_cache_ttl, c.log_format) == (86400.0, 1048576, 3600.0, "text")
    assert (c.tls_cert, c.tls_key, c.tls_ca, c.admin_token) == (None, None, None, None)
    assert c.instance_id == "gw1"


def test_layers_override_in_order():
    """defaults < .env.ocpp < environment < options."""
    dotenv = "PORT=9100\nHEARTBEAT_INTERVAL=60\nOCPP_PATH=/x\n"
    environ = {"PORT": "9200", "HEARTBEAT_INTERVAL": "90", "UNRELATED": "whatever"}
    cli = {"PORT": "9300"}
    c = load_config(dotenv, environ, cli)
    assert (c.port, c.heartbeat_interval, c.ocpp_path) == (9300, 90, "/x")


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("PORT", "abc", "PORT must be an integer"),
        ("PORT", "70000", "PORT must be between"),
        ("ENABLE_RABBITMQ", "maybe", "ENABLE_RABBITMQ must be true or false"),
        ("OCPP_VALIDATION", "loose", "OCPP_VALIDATION must be one of strict, lenient"),
        ("OCPP_CALL_TIMEOUT", "-1", "OCPP_CALL_TIMEOUT"),
        ("OCPP_CALL_TIMEOUT", "nan", "OCPP_CALL_TIMEOUT"),
        ("BACKEND_API_URL", "ftp://x", "BACKEND_API_URL must be a http or https URL"),
        ("OCPP_SECURITY_PROFILE", "4", "OCPP_SECURITY_PROFILE must be between 0 and 3"),
        ("OCPP_PATH", "/", "OCPP_PATH must be a path"),
        ("EMBEDDED_PRICE_PER_KWH", "cheap", "EMBEDDED_PRICE_PER_KWH must be a decimal"),
        ("ACCEPT_RATE", "fast", "ACCEPT_RATE must be an integer, got 'fast' (or auto)"),
        ("ACCEPT_RATE", "-5", "ACCEPT_RATE must be between 0 and 1000000, got -5 (or auto)"),
        ("ACCEPT_CPU_SHARE", "0", "ACCEPT_CPU_SHARE must be more than 0 and at most 1"),
        ("ACCEPT_CPU_SHARE", "half", "ACCEPT_CPU_SHARE must be a number"),
        ("TRUSTED_PROXIES", "10.0.0.1,proxy.local", "TRUSTED_PROXIES must list IP addresses or networks, got 'proxy.local'"),
        ("MAX_CONNECTIONS_PER_IP", "-1", "MAX_CONNECTIONS_PER_IP must be between"),
        ("MESSAGE_LOG_MAX_BYTES", "10", "MESSAGE_LOG_MAX_BYTES must be between"),
    ],
)
def test_bad_values_name_the_variable(name, value, fragment):
    """A malformed value is one line naming the variable."""
    with pytest.raises(ConfigError) as e:
        load_config("", {name: value}, {})
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_names_in_dotenv_are_refused():
    """A typo in .env.ocpp is an error, not silently ignored."""
    with pytest.raises(ConfigError, match="unknown variable PROT"):
        load_config("PROT=1\n", {}, {})


def test_dotenv_syntax():
    """Comments, export, quotes; a line that is not NAME=value is an error."""
    assert parse_dotenv("# c\nexport A=1\nB='two words'\nC=\"x\" \nD=3 # note\n") == {
        "A": "1",
        "B": "two words",
        "C": "x",
        "D": "3",
    }
    with pytest.raises(ConfigError, match="line 2"):
        parse_dotenv("A=1\nnonsense\n")


def test_combinations_are_checked():
    """Settings that need each other say so."""
    with pytest.raises(ConfigError, match="TLS_CERT and TLS_KEY"):
        load_config("", {"TLS_CERT": "c.pem"}, {})
    with pytest.raises(ConfigError, match="OCPP_SECURITY_PROFILE=2 needs TLS_CERT"):
        load_config("", {"OCPP_SECURITY_PROFILE": "2"}, {})
    with pytest.raises(ConfigError, match="CLIENT_CERT_HEADER needs TRUSTED_PROXIES"):
        load_config("", {"CLIENT_CERT_HEADER": "x-ssl-cert"}, {})


def test_money_is_decimal_and_secrets_are_masked():
    """The tariff is a Decimal; redacted() hides tokens and broker passwords."""
    c = load_config("", {"EMBEDDED_PRICE_PER_KWH": "0.35", "ADMIN_API_TOKEN": "s3cret", "RABBITMQ_URL": "amqp://u:pw@h:5672/v"}, {})
    assert c.embedded_price == Decimal("0.35")
    shown = c.redacted()
    assert shown["ADMIN_API_TOKEN"] == "***"
    assert "pw" not in shown["RABBITMQ_URL"] and "u:***@h:5672" in shown["RABBITMQ_URL"]


def test_every_setting_is_a_config_field():
    """The settings table and the Config dataclass agree."""
    assert {s.attr for s in SETTINGS} == {f.name for f in dataclasses.fields(Config)}
    assert isinstance(load_config(), Config)


def test_instance_slot_is_stable_and_overridable():
    """The slot derives from INSTANCE_ID unless INSTANCE_SLOT is set."""
    a = load_config("", {"INSTANCE_ID": "gw-a"}, {})
    assert a.instance_slot == load_config("", {"INSTANCE_ID": "gw-a"}, {}).instance_slot
    assert load_config("", {"INSTANCE_ID": "gw-a", "INSTANCE_SLOT": "7"}, {}).instance_slot == 7


def test_accept_rate_is_auto_by_default_or_a_number():
    assert load_config("", {}, {}).accept_rate is None
    assert load_config("", {"ACCEPT_RATE": "AUTO"}, {}).accept_rate is None
    assert load_config("", {"ACCEPT_RATE": "250"}, {}).accept_rate == 250
    assert load_config("", {"ACCEPT_RATE": "0"}, {}).accept_rate == 0


def test_readme_documents_every_setting():
    """The README's configuration table names every variable the gateway reads."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| ")]
    missing = [s.env for s in SETTINGS if not any(s.env in line for line in table)]
    assert missing == []


def test_a_prefixed_typo_in_the_environment_stops_the_start_naming_the_closest():
    """OCPP_SECURTY_PROFILE=2 in the process environment is refused, naming OCPP_SECURITY_PROFILE."""
    with pytest.raises(ConfigError) as e:
        load_config("", {"OCPP_SECURTY_PROFILE": "2"}, {})
    assert str(e.value) == "the environment sets unknown variable OCPP_SECURTY_PROFILE; did you mean OCPP_SECURITY_PROFILE?"
    with pytest.raises(ConfigError, match="unknown variable RABBITMQ_EXCHANGES; did you mean RABBITMQ_EXCHANGE"):
        load_config("", {"RABBITMQ_EXCHANGES": "x"}, {})
    with pytest.raises(ConfigError, match="unknown variable OCPP_WHATEVER_ELSE; docs/operations.md"):
        load_config("", {"OCPP_WHATEVER_ELSE": "1"}, {})
    with pytest.raises(ConfigError, match=r"\.env\.ocpp sets unknown variable TLS_CRT; did you mean TLS_CERT\?"):
        load_config("TLS_CRT=x\n", {}, {})


def test_variables_of_other_software_and_service_links_are_not_typos():
    """HTTP_PROXY, PATH and what Kubernetes injects for Services named rabbitmq or backend are left alone."""
    environ = {
        "HTTP_PROXY": "http://proxy:3128",
        "PATH": "/usr/bin",
        "RABBITMQ_PORT": "tcp://10.0.0.5:5672",
        "RABBITMQ_SERVICE_HOST": "10.0.0.5",
        "RABBITMQ_SERVICE_PORT_AMQP": "5672",
        "RABBITMQ_PORT_5672_TCP_ADDR": "10.0.0.5",
        "BACKEND_PORT_8080_TCP": "tcp://10.0.0.6:8080",
    }
    assert load_config("", environ, {}).port == 9000


def test_empty_instance_slot_stops_the_start():
    """INSTANCE_SLOT set but empty (no pod-index label before Kubernetes 1.28) is refused, never hashed."""
    with pytest.raises(ConfigError, match="INSTANCE_SLOT is set but empty .*Kubernetes 1.28"):
        load_config("", {"INSTANCE_ID": "ocpptw-0", "INSTANCE_SLOT": ""}, {})
    with pytest.raises(ConfigError, match="INSTANCE_SLOT is set but empty"):
        load_config("INSTANCE_SLOT=\n", {}, {})
    assert load_config("", {"INSTANCE_ID": "ocpptw-0"}, {}).instance_slot == load_config("", {"INSTANCE_ID": "ocpptw-0"}, {}).instance_slot


@pytest.mark.parametrize(
    "name, value",
    [
        ("ADMIN_API_TOKEN", "change-me"),
        ("ADMIN_API_TOKEN", "CHANGEME"),
        ("BACKEND_API_TOKEN", "replace-me"),
        ("RABBITMQ_URL", "amqp://ocpp:change-me@rabbitmq:5672"),
    ],
)
def test_placeholder_secrets_are_refused(name, value):
    """A template's placeholder is never run as a secret."""
    with pytest.raises(ConfigError, match=name):
        load_config("", {name: value}, {})


def test_profile_one_without_tls_is_a_warning():
    """Profile 1 over plain ws works but warns; profile 0 and TLS do not."""
    assert load_config("", {"OCPP_SECURITY_PROFILE": "1"}, {}).warnings()[0].startswith("OCPP_SECURITY_PROFILE=1 without TLS")
    assert load_config().warnings() == []


def test_redacted_shows_values_as_an_operator_writes_them():
    """ACCEPT_RATE auto, unset, true/false, 30 not 30.0."""
    shown = load_config().redacted()
    assert shown["ACCEPT_RATE"] == "auto" and shown["BACKEND_API_URL"] == "unset"
    assert shown["ENABLE_RABBITMQ"] == "false" and shown["OCPP_CALL_TIMEOUT"] == "30"
    assert all(isinstance(v, str) for v in shown.values())
