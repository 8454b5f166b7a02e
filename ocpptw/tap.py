# -*- test-case-name: tests.test_packaging,tests.e2e.test_daemon -*-
"""
C{twistd ocpp}: the options and C{makeService}.  This is the one module that
reads C{.env.ocpp} and the process environment.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from ocpptw.config import SETTINGS, Config, ConfigError, load_config

DOTENV = ".env.ocpp"


def _help(setting: Any) -> str:
    default = setting.default if setting.default not in (None, "") else "unset"
    return f"{setting.help} [{setting.env}; default {default}]"


def version_line() -> str:
    """
    C{ocpptw 0.1.0 (Twisted ..., Autobahn ..., Python ...)}.
    """
    import platform
    from importlib.metadata import version

    from ocpptw import __version__
    from twisted import copyright

    return f"ocpptw {__version__} (Twisted {copyright.version}, Autobahn {version('autobahn')}, Python {platform.python_version()})"


class Options(usage.Options):
    """
    Every configuration variable of docs/contract.md section 2 as an option: each
    overrides the environment, which overrides C{.env.ocpp}.
    """

    synopsis = "[options]"
    longdesc = (
        "OCPP 1.6J gateway. Chargers connect to ws://HOST:PORT/ocpp/{chargePointId}; "
        "/health, /ready, /metrics and /api/v1 share the port. Settings come from "
        ".env.ocpp in the working directory, then the environment, then these options."
    )
    optParameters = [[s.option, None, None, _help(s)] for s in SETTINGS] + [
        ["worker", None, None, "set by the parent of WORKERS worker processes on each of them: its number, from 1"],
    ]

    config: Config
    #: The options as given (C{--name=value}), for the workers of C{WORKERS}.
    cli: list[str]
    #: Whether twistd writes its log to standard output (C{-n}, no C{--logfile}).
    to_stdout = False

    def opt_version(self) -> None:
        """
        Display ocpptw's version (and Twisted's, Autobahn's, Python's) and exit.
        """
        print(version_line())
        raise SystemExit(0)

    def postOptions(self) -> None:
        cli = {s.env: self[s.option] for s in SETTINGS if self[s.option] is not None}
        self.cli = [f"--{s.option}={self[s.option]}" for s in SETTINGS if self[s.option] is not None]
        if self["worker"] is not None and (not self["worker"].isdigit() or int(self["worker"]) < 1):
            raise SystemExit(f"ocpp: --worker must be a number from 1, got {self['worker']!r}")
        try:
            dotenv = Path(DOTENV).read_text(encoding="utf-8") if Path(DOTENV).exists() else ""
        except (OSError, UnicodeDecodeError) as e:
            raise SystemExit(f"ocpp: cannot read {DOTENV}: {e}") from None
        try:
            self.config = load_config(dotenv, os.environ, cli, hostname=socket.gethostname())
        except ConfigError as e:
            raise SystemExit(f"ocpp: {e}") from None
        from ocpptw.observability.logs import configure, configure_twistd

        configure(self.config.log_level)
        parent = getattr(self, "parent", None)
        self.to_stdout = bool(parent is not None and parent.get("nodaemon") and not parent.get("logfile"))
        if parent is not None and not parent.get("logger") and not parent.get("syslog"):
            # Our observers escape charger text, redact secrets and honour
            # LOG_LEVEL and LOG_FORMAT, wherever twistd would write its log.
            configure_twistd(self.config.log_format, parent.get("logfile") or "", bool(parent.get("nodaemon")))
            parent["logger"] = "ocpptw.observability.logs.twistd_observer_factory"


def makeService(options: Options) -> IService:
    """
    Build the gateway's service tree from parsed options.
    """
    from ocpptw.app.gateway import make_gateway
    from ocpptw.transport.tls import TlsError

    _one_line_start_failures()
    worker = int(options["worker"] or 0)
    if options.config.workers > 1 and not worker:
        from ocpptw.app.gateway import make_supervisor

        return make_supervisor(options.config, options.cli, options.to_stdout)
    try:
        return make_gateway(options.config, daemon=True, worker=worker)
    except (TlsError, OSError) as e:
        raise SystemExit(f"ocpp: {e}") from None


def _one_line_start_failures() -> None:
    """
    A start that fails (a port in use, a C{DATA_DIR} that cannot be
    written) ends twistd with our one line, not a traceback: the gateway
    has logged it, and twistd's parent prints it when it daemonizes.
    """
    import sys

    from ocpptw.app.gateway import StartFailed

    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        if issubclass(kind, StartFailed):
            if sys.__stderr__ is not None:  # the terminal; in a daemon, the log has the line already
                sys.__stderr__.write(f"ocpp: {error}\n")
            return
        previous(kind, error, tb)

    sys.excepthook = hook


def tac_log_observer(config: Config, argv: list[str] | None = None) -> Any:
    """
    For C{ocpp.tac}: the observer C{twistd -y} should use, from twistd's
    own command line (a C{.tac} file is not told its C{--logfile} or C{-n}).
    """
    import sys

    from twisted.scripts.twistd import ServerOptions

    from ocpptw.observability.logs import twistd_observer

    options = ServerOptions()
    try:
        options.parseOptions((sys.argv if argv is None else argv)[1:])
    except (usage.UsageError, SystemExit):
        return twistd_observer(config.log_format, "", False)
    return twistd_observer(config.log_format, options.get("logfile") or "", bool(options.get("nodaemon")))
