# syntax=docker/dockerfile:1
#
# The ocpptw gateway as a container.
#
#   docker build -t ocpptw .
#   docker run -p 9000:9000 -v ocpp-data:/var/lib/ocpptw ocpptw
#
# Configuration is environment variables (docs/operations.md; CONTRACT section 2).
# The data directory (embedded store, durable outbox, ledger) is a volume: keep it
# across restarts, or undelivered outbox entries are lost with the container.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/var/lib/ocpptw \
    PORT=9000 \
    HTTP_PORT=9100 \
    LOG_FORMAT=json

RUN groupadd --system --gid 10001 ocpp \
 && useradd --system --uid 10001 --gid ocpp --home-dir /var/lib/ocpptw --no-create-home \
        --shell /usr/sbin/nologin ocpp

WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY ocpptw ./ocpptw
COPY twisted ./twisted
# Install, then write Twisted's plugin cache (dropin.cache) while site-packages is
# still writable: the non-root user cannot write it, and without it every start
# rescans and imports every plugin and logs "Unable to write to plugin cache".
RUN pip install . \
 && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && python -c "from twisted.application.service import IServiceMaker; from twisted.plugin import getPlugins; assert 'ocpp' in {p.tapname for p in getPlugins(IServiceMaker)}" \
 && mkdir -p /var/lib/ocpptw \
 && chown ocpp:ocpp /var/lib/ocpptw \
 && rm -rf /src

WORKDIR /var/lib/ocpptw
VOLUME ["/var/lib/ocpptw"]
USER 10001:10001
# 9000: chargers (ws, or wss with TLS_CERT/TLS_KEY) and the API; 9100: plain HTTP for
# /health, /ready, /metrics and the API, whatever TLS does on 9000.
EXPOSE 9000 9100

# Liveness only, on HTTP_PORT: plain HTTP also when PORT serves wss (a plain request to
# a TLS port would fail and restart a healthy container).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['HTTP_PORT'], timeout=4)"]

# twistd handles SIGTERM as the drain (stop accepting, finish calls, flush the
# outbox, close sockets with 1001). -n: foreground; --pidfile=: no stale pid file
# refusing a restarted container.
STOPSIGNAL SIGTERM
ENTRYPOINT ["twistd", "-n", "--pidfile=", "ocpp"]
