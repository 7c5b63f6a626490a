#!/usr/bin/env bash
# ---------------------------------------------------------------------------
# Choose the base images for `make up`: the official ones when a registry
# answers, else images built from Debian packages (scripts/build-base-images.sh),
# which this script then writes to .env (read by compose) with the host's CA
# bundle for pip inside the builds. Says what it does; does nothing when
# PYTHON_IMAGE, NGINX_IMAGE and VALKEY_IMAGE are already set (environment or
# .env). With OBSERVE set (`make up OBSERVE=1`) the images of the "observe"
# profile count too: Prometheus and the two exporters. Building needs root
# (debootstrap): as root it builds, with sudo that asks no password it uses
# sudo, else it says what to run. .ci/run does the same for CI (as root), with
# the variables in its environment instead of .env, and installs debootstrap
# when it is missing.
# ---------------------------------------------------------------------------
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."

# compose.yaml's defaults, and the variables that replace them.
OFFICIAL=(python:3.13-slim nginx:1.28 valkey/valkey:8.1)
VARIABLES=(PYTHON_IMAGE NGINX_IMAGE VALKEY_IMAGE)
if [[ -n "${OBSERVE:-}" ]]; then
  OFFICIAL+=(prom/prometheus:v3.5.0 nginx/nginx-prometheus-exporter:1.4.2 oliver006/redis_exporter:v1.74.0)
  VARIABLES+=(PROMETHEUS_IMAGE NGINX_EXPORTER_IMAGE REDIS_EXPORTER_IMAGE)
fi

configured() {
  local name
  for name in "${VARIABLES[@]}"; do
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

# What scripts/build-base-images.sh makes, and the variables that name it.
# Each variable once: a later `make up OBSERVE=1` adds only what is missing.
LOCAL=(
  PYTHON_IMAGE=local/python-base NGINX_IMAGE=local/nginx-base VALKEY_IMAGE=local/valkey-base
  # The "observe" profile (make up OBSERVE=1): Debian's Prometheus and exporters.
  PROMETHEUS_IMAGE=local/prometheus-base NGINX_EXPORTER_IMAGE=local/nginx-exporter
  REDIS_EXPORTER_IMAGE=local/redis-exporter
  # make test's proxies (tests/integration/intermediaries/): Debian's packages.
  HAPROXY_IMAGE=local/python-base VARNISH_IMAGE=local/python-base CADDY_IMAGE=local/python-base
  APACHE_BASE_IMAGE=local/python-base
)

built() {  # every local image present (an earlier `sudo scripts/build-base-images.sh`)
  local pair
  for pair in "${LOCAL[@]}"; do
    docker image inspect "${pair#*=}:trixie" >/dev/null 2>&1 || return 1
  done
}

# debootstrap unpacks Debian packages into a root filesystem: root only. A
# user's PATH often lacks /usr/sbin, where Debian installs it.
build() {
  if ! command -v debootstrap >/dev/null 2>&1 && [[ ! -x /usr/sbin/debootstrap ]]; then
    echo "debootstrap is needed for that: apt-get install debootstrap (as root), then make up again" >&2
    return 1
  fi
  if [[ ${EUID} -eq 0 ]]; then
    scripts/build-base-images.sh
  elif sudo -n true 2>/dev/null; then
    # sudo resets the environment: pass on what the build reads.
    local name passed=()
    for name in DEBIAN_MIRROR DOCKER_HOST; do
      if [[ -n "${!name:-}" ]]; then
        passed+=("${name}=${!name}")
      fi
    done
    sudo -n env "${passed[@]}" scripts/build-base-images.sh
  else
    echo "building them needs root (debootstrap): run sudo scripts/build-base-images.sh, then make up again" >&2
    return 1
  fi
}

if built; then
  echo "cannot pull ${missing[*]}: using the base images built from Debian packages (local/*:trixie)"
else
  echo "cannot pull ${missing[*]}: building base images from Debian packages instead (about a minute)"
  build
fi
{
  for pair in "${LOCAL[@]}"; do
    grep -qs "^${pair%%=*}=" .env || echo "${pair}:trixie"
  done
  # pip inside the builds trusts what this host trusts (a TLS-intercepting proxy's CA).
  if [[ -s /etc/ssl/certs/ca-certificates.crt ]] && ! grep -qs '^CA_BUNDLE=' .env; then
    echo "CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"
  fi
} >> .env
echo "wrote the local base images (local/*:trixie) to .env"
