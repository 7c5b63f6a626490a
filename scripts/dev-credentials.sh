#!/usr/bin/env bash
# ---------------------------------------------------------------------------
# Write a random development CHAT_AUTH_SECRET, CHAT_VALKEY_PASSWORD,
# GRAFANA_ADMIN_PASSWORD (the "grafana" profile) and MODEL_API_KEY (the local
# model server's key, `make up MODEL=local`) to .env (read by compose), each
# unless it is set already. `make up` runs it;
# .env is never committed. Production: set CHAT_AUTH_JWKS_URL (your identity
# provider) or a secret of your own, and a Valkey password of your own.
# ---------------------------------------------------------------------------
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."

for name in CHAT_AUTH_SECRET CHAT_VALKEY_PASSWORD GRAFANA_ADMIN_PASSWORD MODEL_API_KEY; do
  if [[ -n "${!name:-}" ]] || grep -qs "^${name}=" .env; then
    continue
  fi
  printf '%s=%s\n' "${name}" "$(python3 -c 'import secrets; print(secrets.token_hex(32))')" >> .env
  echo "wrote a development ${name} to .env"
done
