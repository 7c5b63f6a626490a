#!/usr/bin/env bash
# ---------------------------------------------------------------------------
# Build the three base images from Debian packages, for hosts with no container
# registry (air-gapped CI, a mirror-only network).
#
# Why: the Dockerfiles take their base image from a build argument
# (PYTHON_IMAGE, NGINX_IMAGE, VALKEY_IMAGE) whose default is the official image. Where
# `docker pull` cannot reach a registry, this script makes equivalent
# minimal images with debootstrap from a Debian mirror and `docker import`.
#
# Usage: scripts/build-base-images.sh            # builds what is missing
#        FORCE=1 scripts/build-base-images.sh    # rebuilds all three
# Then:  export PYTHON_IMAGE=local/python-base:trixie NGINX_IMAGE=local/nginx-base:trixie \
#               VALKEY_IMAGE=local/valkey-base:trixie
# ---------------------------------------------------------------------------
set -o errexit -o nounset -o pipefail

SUITE="${SUITE:-trixie}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON_IMAGE="${PYTHON_IMAGE:-local/python-base:${SUITE}}"
NGINX_IMAGE="${NGINX_IMAGE:-local/nginx-base:${SUITE}}"
VALKEY_IMAGE="${VALKEY_IMAGE:-local/valkey-base:${SUITE}}"
FORCE="${FORCE:-0}"

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "debootstrap not found: install it (apt-get install -y debootstrap)" >&2
  exit 1
fi

# build_image NAME PACKAGES: a minbase root filesystem with PACKAGES, imported as NAME.
build_image() {
  local name="$1" packages="$2" rootfs
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
  tar -C "${rootfs}" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    - "${name}" >/dev/null
  echo "base image ${name}: built"
}

build_image "${PYTHON_IMAGE}" "python3,python3-venv,ca-certificates" &
python_pid=$!
build_image "${NGINX_IMAGE}" "nginx-light,ca-certificates,curl" &
nginx_pid=$!
# Valkey 8.1 (trixie), the same minor version as the official default.
build_image "${VALKEY_IMAGE}" "valkey-server,valkey-tools" &
valkey_pid=$!
wait "${python_pid}"
wait "${nginx_pid}"
wait "${valkey_pid}"
