#!/bin/sh
# Start Valkey with the password and memory bound from the environment.
# They go in on standard input ("-"), appended to the configuration file, so
# the password is in no file, no command line and no `ps` output. `exec`
# with a here-document, not a pipe: valkey-server must replace this shell as
# PID 1 to receive SIGTERM (`docker stop`) and shut down at once. The memory
# bound's default lives here only: compose passes VALKEY_MAXMEMORY on empty
# when it is not set.
set -eu
if [ -z "${VALKEY_PASSWORD:-}" ]; then
  echo "VALKEY_PASSWORD is empty: refusing to start an open store (make up writes one to .env)" >&2
  exit 1
fi
exec valkey-server /etc/valkey/chat.conf - <<CONFIG
requirepass "${VALKEY_PASSWORD}"
maxmemory ${VALKEY_MAXMEMORY:-256mb}
CONFIG
