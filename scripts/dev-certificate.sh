#!/usr/bin/env bash
# ---------------------------------------------------------------------------
# Make a self-signed development certificate for nginx's HTTPS port, unless
# the directory already holds a certificate. `make up` and the tests run it.
#
# Usage: scripts/dev-certificate.sh [DIR]     (default: $TLS_CERT_DIR or certs)
# Writes DIR/tls.crt and DIR/tls.key: ECDSA P-256, valid 30 days, for
# localhost, 127.0.0.1 and ::1. Browsers warn about it (nobody vouches for
# it); curl takes it with --cacert DIR/tls.crt.
#
# Production: put your real certificate chain and key in DIR as tls.crt and
# tls.key instead; this script never replaces a certificate it did not make.
# ---------------------------------------------------------------------------
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."

dir="${1:-${TLS_CERT_DIR:-certs}}"
crt="${dir}/tls.crt"
key="${dir}/tls.key"
# Marks the certificates this script made, so only those are renewed.
subject="/O=chat-stream development/CN=localhost"

if ! command -v openssl >/dev/null 2>&1; then
  echo "openssl not found: install it, or put tls.crt and tls.key in ${dir}" >&2
  exit 1
fi

if [[ -s "${crt}" && -s "${key}" ]]; then
  if ! openssl x509 -in "${crt}" -noout -subject | grep -q "chat-stream development"; then
    exit 0  # someone else's certificate: leave it alone
  fi
  if openssl x509 -in "${crt}" -noout -checkend 86400 >/dev/null; then
    exit 0  # ours, valid for at least another day
  fi
  echo "renewing the development certificate in ${dir}"
fi

mkdir -p "${dir}"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -nodes -days 30 \
  -subj "${subject}" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" \
  -keyout "${key}.new" -out "${crt}.new" 2>/dev/null
# nginx runs as uid 101 in its container and must read the key (and enter
# the directory). This key is a throwaway for localhost; a real key belongs
# to uid 101 with mode 0400.
chmod 0755 "${dir}"
chmod 0644 "${key}.new" "${crt}.new"
mv "${key}.new" "${key}"
mv "${crt}.new" "${crt}"
echo "wrote a development certificate to ${dir} (localhost, 30 days)"
