#!/usr/bin/env bash
# ---------------------------------------------------------------------------
# Write a random development CHAT_AUTH_SECRET to .env (read by compose),
# unless one is set already. `make up` runs it; .env is never committed.
# Production: set CHAT_AUTH_JWKS_URL (your identity provider) or a secret of
# your own, not this one.
# ---------------------------------------------------------------------------
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."

if [[ -n "${CHAT_AUTH_SECRET:-}" ]] || grep -qs '^CHAT_AUTH_SECRET=' .env; then
  exit 0
fi
printf 'CHAT_AUTH_SECRET=%s\n' "$(python3 -c 'import secrets; print(secrets.token_hex(32))')" >> .env
echo "wrote a development CHAT_AUTH_SECRET to .env"
