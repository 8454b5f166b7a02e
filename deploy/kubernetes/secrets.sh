#!/bin/sh
# Create (or update) the two Secrets the manifests reference; nothing secret is
# committed to the repository.
#
#   RABBITMQ_URL=amqps://ocpp:<password>@rabbitmq.messaging:5671 \
#   BACKEND_API_TOKEN=<the backend's token> \
#   TLS_CERT_FILE=server.crt TLS_KEY_FILE=server.key \
#   deploy/kubernetes/secrets.sh [kubectl options, e.g. -n charging]
#
# The broker is a trust boundary: whoever may publish to the gateway's exchanges can
# send commands to chargers and take a charger's commands over with a claim. Give the
# gateway a virtual host and a user of its own (never guest, never "/"):
#   rabbitmqctl add_vhost ocpptw
#   rabbitmqctl add_user ocpptw '<password>'
#   rabbitmqctl set_permissions -p ocpptw ocpptw '.*' '.*' '.*'
# and RABBITMQ_URL=amqps://ocpptw:<password>@rabbitmq:5671/ocpptw. Command senders get
# their own user in that vhost, allowed to write to ocpp.commands only
# (docs/operations.md, "Security").
#
# ADMIN_API_TOKEN is generated (32 random bytes, hex) unless given; it is printed once
# so that it can be stored in the operators' password manager. With DRY_RUN=1 the
# Secrets are printed as YAML instead of applied (no cluster needed).
set -eu

: "${RABBITMQ_URL:?set RABBITMQ_URL (amqp[s]://user:password@host:port) from your secret store}"
: "${TLS_CERT_FILE:?set TLS_CERT_FILE to the PEM certificate (with its chain) for wss}"
: "${TLS_KEY_FILE:?set TLS_KEY_FILE to the PEM private key for wss}"

if [ -z "${ADMIN_API_TOKEN:-}" ]; then
    ADMIN_API_TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    echo "generated ADMIN_API_TOKEN=$ADMIN_API_TOKEN (store it now; it is not shown again)" >&2
fi

# The Secrets are rendered locally (--dry-run=client), then applied: re-running the
# script updates them.
mode="--dry-run=client"
if [ "${DRY_RUN:-0}" = 1 ]; then
    apply() { cat; }
else
    apply() { kubectl apply "$@" -f -; }
fi

{
    if [ -n "${BACKEND_API_TOKEN:-}" ]; then
        kubectl create secret generic ocpptw "$@" $mode -o yaml \
            --from-literal=ADMIN_API_TOKEN="$ADMIN_API_TOKEN" \
            --from-literal=RABBITMQ_URL="$RABBITMQ_URL" \
            --from-literal=BACKEND_API_TOKEN="$BACKEND_API_TOKEN"
    else
        kubectl create secret generic ocpptw "$@" $mode -o yaml \
            --from-literal=ADMIN_API_TOKEN="$ADMIN_API_TOKEN" \
            --from-literal=RABBITMQ_URL="$RABBITMQ_URL"
    fi
    echo "---"
    kubectl create secret tls ocpptw-tls "$@" $mode -o yaml --cert="$TLS_CERT_FILE" --key="$TLS_KEY_FILE"
} | apply "$@"
