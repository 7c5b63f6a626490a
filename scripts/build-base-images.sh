#!/usr/bin/env bash
# ---------------------------------------------------------------------------
# Build the base images from Debian packages, for hosts with no container
# registry (air-gapped CI, a mirror-only network).
#
# Why: the Dockerfiles take their base image from a build argument
# (PYTHON_IMAGE, NGINX_IMAGE, VALKEY_IMAGE, PROMETHEUS_IMAGE) whose default is
# the official image, and the two exporters of the "observe" profile are
# images named by NGINX_EXPORTER_IMAGE and REDIS_EXPORTER_IMAGE. Where
# `docker pull` cannot reach a registry, this script makes equivalent
# minimal images with debootstrap from a Debian mirror and `docker import`
# (the exporters' with the Debian binary as their entrypoint, as the
# official images have theirs).
#
# Usage: scripts/build-base-images.sh            # builds what is missing
#        FORCE=1 scripts/build-base-images.sh    # rebuilds them all
# Then:  export PYTHON_IMAGE=local/python-base:trixie NGINX_IMAGE=local/nginx-base:trixie \
#               VALKEY_IMAGE=local/valkey-base:trixie PROMETHEUS_IMAGE=local/prometheus-base:trixie \
#               NGINX_EXPORTER_IMAGE=local/nginx-exporter:trixie REDIS_EXPORTER_IMAGE=local/redis-exporter:trixie
# ---------------------------------------------------------------------------
set -o errexit -o nounset -o pipefail

SUITE="${SUITE:-trixie}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON_IMAGE="${PYTHON_IMAGE:-local/python-base:${SUITE}}"
NGINX_IMAGE="${NGINX_IMAGE:-local/nginx-base:${SUITE}}"
VALKEY_IMAGE="${VALKEY_IMAGE:-local/valkey-base:${SUITE}}"
PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-local/prometheus-base:${SUITE}}"
NGINX_EXPORTER_IMAGE="${NGINX_EXPORTER_IMAGE:-local/nginx-exporter:${SUITE}}"
REDIS_EXPORTER_IMAGE="${REDIS_EXPORTER_IMAGE:-local/redis-exporter:${SUITE}}"
FORCE="${FORCE:-0}"

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "debootstrap not found: install it (apt-get install -y debootstrap)" >&2
  exit 1
fi

# build_image NAME PACKAGES [ENTRYPOINT]: a minbase root filesystem with
# PACKAGES, imported as NAME; with ENTRYPOINT (a binary), an image that runs
# it as "nobody", like an official exporter image.
build_image() {
  local name="$1" packages="$2" entrypoint="${3:-}" rootfs
  local changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV LANG=C.UTF-8')
  if [[ -n "${entrypoint}" ]]; then
    changes+=(--change "ENTRYPOINT [\"${entrypoint}\"]" --change 'USER nobody')
  fi
  if [[ "${FORCE}" != 1 ]] && docker image inspect "${name}" >/dev/null 2>&1; then
    echo "base image ${name}: present"
    return
  fi
  rootfs="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: the trap must remove this rootfs
  trap "rm -rf '${rootfs}'" RETURN
  echo "base image ${name}: debootstrap ${SUITE} with ${packages}"
  debootstrap --variant=minbase --include="${packages}" "${SUITE}" "${rootfs}" "${MIRROR}" \
    >"${rootfs}.log" 2>&1 || { tail -n 30 "${rootfs}.log" >&2; exit 1; }
  rm -f "${rootfs}.log"
  # Keep the images small: no package lists or caches.
  rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/var/cache/apt/archives/*.deb
  tar -C "${rootfs}" -c . | docker import "${changes[@]}" - "${name}" >/dev/null
  echo "base image ${name}: built"
}

build_image "${PYTHON_IMAGE}" "python3,python3-venv,ca-certificates" &
python_pid=$!
build_image "${NGINX_IMAGE}" "nginx-light,ca-certificates,curl" &
nginx_pid=$!
# Valkey 8.1 (trixie), the same minor version as the official default.
build_image "${VALKEY_IMAGE}" "valkey-server,valkey-tools" &
valkey_pid=$!
# The "observe" profile: Prometheus (its Dockerfile runs it) and the two
# exporters (Debian's packages of the same upstream projects).
build_image "${PROMETHEUS_IMAGE}" "prometheus" &
prometheus_pid=$!
build_image "${NGINX_EXPORTER_IMAGE}" "prometheus-nginx-exporter" /usr/bin/prometheus-nginx-exporter &
nginx_exporter_pid=$!
build_image "${REDIS_EXPORTER_IMAGE}" "prometheus-redis-exporter" /usr/bin/prometheus-redis-exporter &
redis_exporter_pid=$!
for pid in "${python_pid}" "${nginx_pid}" "${valkey_pid}" "${prometheus_pid}" "${nginx_exporter_pid}" \
  "${redis_exporter_pid}"; do
  wait "${pid}"
done
