#!/usr/bin/env bash
# ---------------------------------------------------------------------------
# Choose the base images for `make up`: the official ones when a registry
# answers, else images built from Debian packages (scripts/build-base-images.sh),
# which this script then writes to .env (read by compose) with the host's CA
# bundle for pip inside the builds. Says what it does; does nothing when
# PYTHON_IMAGE, NGINX_IMAGE and VALKEY_IMAGE are already set (environment or
# .env). .ci/run does the same for CI.
# ---------------------------------------------------------------------------
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."

OFFICIAL=(python:3.13-slim nginx:1.28 valkey/valkey:8.1)  # compose.yaml's defaults

configured() {
  local name
  for name in PYTHON_IMAGE NGINX_IMAGE VALKEY_IMAGE; do
    [[ -n "${!name:-}" ]] || grep -qs "^${name}=" .env || return 1
  done
}

available() {  # present, or pulled within a minute
  docker image inspect "$1" >/dev/null 2>&1 || timeout 60 docker pull -q "$1" >/dev/null 2>&1
}

if configured; then
  exit 0
fi
missing=()
for image in "${OFFICIAL[@]}"; do
  available "${image}" || missing+=("${image}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
echo "cannot pull ${missing[*]}: building base images from Debian packages instead (about a minute)"
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "debootstrap is needed for that: apt-get install debootstrap (as root), then make up again" >&2
  exit 1
fi
scripts/build-base-images.sh
{
  echo "PYTHON_IMAGE=local/python-base:trixie"
  echo "NGINX_IMAGE=local/nginx-base:trixie"
  echo "VALKEY_IMAGE=local/valkey-base:trixie"
  # make test's proxies (tests/integration/intermediaries/): Debian's packages.
  echo "HAPROXY_IMAGE=local/python-base:trixie"
  echo "VARNISH_IMAGE=local/python-base:trixie"
  echo "CADDY_IMAGE=local/python-base:trixie"
  echo "APACHE_BASE_IMAGE=local/python-base:trixie"
  # pip inside the builds trusts what this host trusts (a TLS-intercepting proxy's CA).
  if [[ -s /etc/ssl/certs/ca-certificates.crt ]] && ! grep -qs '^CA_BUNDLE=' .env; then
    echo "CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"
  fi
} >> .env
echo "wrote PYTHON_IMAGE, NGINX_IMAGE and VALKEY_IMAGE (local/*-base:trixie) to .env"
