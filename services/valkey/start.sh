#!/bin/sh
# Start Valkey with the password and memory bound from the environment.
# They go in on standard input ("-"), appended to the configuration file, so
# the password is in no file, no command line and no `ps` output.
set -eu
if [ -z "${VALKEY_PASSWORD:-}" ]; then
  echo "VALKEY_PASSWORD is empty: refusing to start an open store (make up writes one to .env)" >&2
  exit 1
fi
printf 'requirepass "%s"\nmaxmemory %s\n' "${VALKEY_PASSWORD}" "${VALKEY_MAXMEMORY:-256mb}" \
  | exec valkey-server /etc/valkey/chat.conf -
