"""Which intermediaries a response passed through, from the headers they left,
and each product's own fix for each verdict.

A generic fix ("an intermediary buffers") leaves the reader to find which hop
and which setting; most products say who they are in a response header, so
the probe can name the setting. Only headers are read: a product that adds
none (HAProxy, Traefik, an ALB on a proxied response) is not named, and the
generic fix stands.

Our own API names its process in ``X-Served-By`` (``<host>-<pid>-<hex>``,
app.reply_store.process_id); Fastly uses the same header for its caches
(``cache-<pop>...``), so only the latter names an intermediary. An origin
server's ``Server`` header (uvicorn, gunicorn) is not an intermediary either.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from streamcheck.timing import Kind

NGINX = "nginx"
CLOUDFLARE = "Cloudflare"
CLOUDFRONT = "AWS CloudFront"
ALB = "AWS ALB/ELB"
FASTLY = "Fastly"
VARNISH = "Varnish"
HAPROXY = "HAProxy"
APACHE = "Apache httpd (mod_proxy)"
CADDY = "Caddy"
TRAEFIK = "Traefik"
ENVOY = "Envoy"
FLY = "Fly.io proxy"
GOOGLE = "Google Cloud load balancer"

# Each product's fix, per verdict. Short and exact: the setting, where, and its default when that is the cause.
PRODUCT_FIXES: dict[str, dict[Kind, str]] = {
    NGINX: {
        Kind.BUFFERED: "`proxy_buffering off;` in the streaming location (or stop ignoring the API's "
        "`X-Accel-Buffering: no`: no `proxy_ignore_headers X-Accel-Buffering`), `proxy_cache off;`, "
        "`proxy_http_version 1.1;`",
        Kind.COMPRESSED: "`gzip off;` (and `brotli off;` with ngx_brotli) in the streaming location",
        Kind.COALESCED: "`proxy_buffering off;` in the streaming location, and `tcp_nodelay on;` (the default)",
        Kind.IDLE_TIMEOUT: "`proxy_read_timeout` (60 s by default) above the heartbeat interval, in the streaming "
        "location",
        Kind.CUT: "its error.log says which side closed: 'upstream prematurely closed connection' is the API",
    },
    CLOUDFLARE: {
        Kind.BUFFERED: "a Cache Rule that bypasses the cache for the streaming path; on Enterprise, Response "
        "Buffering off",
        Kind.COMPRESSED: "a Compression Rule that disables compression for the streaming path",
        Kind.COALESCED: "a Compression Rule that disables compression for the streaming path",
        Kind.IDLE_TIMEOUT: "it closes a connection after 100 s without data (error 524): heartbeats well under it "
        "(Enterprise can raise the Proxy Read Timeout)",
    },
    CLOUDFRONT: {
        Kind.BUFFERED: "a cache behavior for the streaming path with the CachingDisabled managed cache policy",
        Kind.COMPRESSED: "on that cache behavior, Compress objects automatically: No",
        Kind.IDLE_TIMEOUT: "the origin's Response timeout (30 s by default) above the heartbeat interval",
    },
    ALB: {
        Kind.IDLE_TIMEOUT: "the load balancer attribute `idle_timeout.timeout_seconds` (60 s by default) above "
        "the heartbeat interval",
    },
    FASTLY: {
        Kind.BUFFERED: "`return(pass);` in vcl_recv for the streaming path, and `set beresp.do_stream = true;` "
        "in vcl_fetch",
        Kind.COMPRESSED: "no dynamic compression for text/event-stream (do not set `beresp.gzip` or "
        "`beresp.brotli` for it)",
        Kind.IDLE_TIMEOUT: "the backend's `between_bytes_timeout` (10 s by default) above the heartbeat interval",
    },
    VARNISH: {
        Kind.BUFFERED: "`return (pass);` in vcl_recv for the streaming path, and `set beresp.do_stream = true;` "
        "in vcl_backend_response",
        Kind.COMPRESSED: "`set beresp.do_gzip = false;` (and `set beresp.do_esi = false;`) for text/event-stream "
        "in vcl_backend_response",
        Kind.IDLE_TIMEOUT: "the backend's `.between_bytes_timeout` (60 s by default) above the heartbeat interval",
    },
    HAPROXY: {
        Kind.BUFFERED: "HAProxy passes responses on as they come (`option http-buffer-request` buffers only the "
        "request): look for `http-response wait-for-body` or a filter on the backend",
        Kind.COMPRESSED: "drop text/event-stream from `compression type` (or no `compression` in the backend)",
        Kind.COALESCED: "`option http-no-delay` in the frontend or backend: otherwise the kernel is let gather "
        "small writes, about 200 ms",
        Kind.IDLE_TIMEOUT: "`timeout server` and `timeout client` above the heartbeat interval (`timeout tunnel` "
        "for the WebSocket once upgraded)",
    },
    APACHE: {
        Kind.BUFFERED: "`flushpackets=on` on the streaming path's ProxyPass",
        Kind.COMPRESSED: "`SetEnv no-gzip 1` in the streaming path's <Location> (no mod_deflate for text/event-stream)",
        Kind.COALESCED: "`flushpackets=on` on the streaming path's ProxyPass",
        Kind.IDLE_TIMEOUT: "`ProxyTimeout` (or `timeout=` on the ProxyPass; both default to `Timeout`, 60 s) "
        "above the heartbeat interval",
    },
    CADDY: {
        Kind.BUFFERED: "`flush_interval -1` in the reverse_proxy block",
        Kind.COMPRESSED: "keep the streaming path out of `encode` (`@compress not path /api/chat/message/stream` "
        "then `encode @compress gzip zstd`)",
        Kind.COALESCED: "`flush_interval -1` in the reverse_proxy block",
        Kind.IDLE_TIMEOUT: "reverse_proxy `transport http { read_timeout ... }` (unset by default) above the "
        "heartbeat interval",
        Kind.CUT: "a server `timeouts { write ... }` limits the whole response: leave it unset",
    },
    TRAEFIK: {
        Kind.BUFFERED: "no `buffering` middleware on the streaming router (it holds whole responses)",
        Kind.COMPRESSED: "the compress middleware with `excludedContentTypes: [text/event-stream]`",
        Kind.COALESCED: "the service's `responseForwarding.flushInterval` (100 ms by default; a negative value "
        "flushes every write)",
        Kind.CUT: "the entry point's `transport.respondingTimeouts.writeTimeout` limits the whole response: 0 "
        "(the default)",
    },
    ENVOY: {
        Kind.BUFFERED: "no filter that buffers response bodies on the route (e.g. ext_proc "
        "`response_body_mode: BUFFERED`)",
        Kind.COMPRESSED: "leave text/event-stream out of the compressor filter's `content_type`",
        Kind.IDLE_TIMEOUT: "the route's `idle_timeout`, or the connection manager's `stream_idle_timeout` "
        "(5 min by default), above the heartbeat interval",
        Kind.CUT: "the route `timeout` (15 s by default) limits the whole response: `timeout: 0s` on the "
        "streaming route",
    },
    FLY: {
        Kind.IDLE_TIMEOUT: "Fly Proxy closes a connection idle for about 60 s: heartbeats well under it",
    },
    GOOGLE: {
        Kind.IDLE_TIMEOUT: "the backend service timeout (30 s by default) bounds the response: raise it "
        "(`gcloud compute backend-services update NAME --timeout=...`)",
        Kind.CUT: "the backend service timeout (30 s by default) bounds the response: raise it "
        "(`gcloud compute backend-services update NAME --timeout=...`)",
    },
}

# Words in Via and Server values that name a product.
_NAMED = (
    ("cloudfront", CLOUDFRONT),
    ("cloudflare", CLOUDFLARE),
    ("awselb", ALB),
    ("openresty", NGINX),
    ("nginx", NGINX),
    ("varnish", VARNISH),
    ("haproxy", HAPROXY),
    ("apache", APACHE),
    ("caddy", CADDY),
    ("traefik", TRAEFIK),
    ("envoy", ENVOY),
    ("fly/", FLY),
    ("google", GOOGLE),
)
# Headers whose mere presence names a product.
_PRESENT = (
    ("cf-ray", CLOUDFLARE),
    ("cf-cache-status", CLOUDFLARE),
    ("x-amz-cf-id", CLOUDFRONT),
    ("x-amz-cf-pop", CLOUDFRONT),
    ("x-varnish", VARNISH),
    ("fly-request-id", FLY),
    ("x-envoy-upstream-service-time", ENVOY),
)
# Origin servers: a Server header that names one is no intermediary.
_ORIGINS = ("uvicorn", "gunicorn", "hypercorn", "granian", "daphne", "werkzeug", "coyote")
_FASTLY_CACHE = re.compile(r"^cache-[a-z0-9-]+$", re.IGNORECASE)


@dataclass(frozen=True)
class Intermediary:
    name: str  # the product, or "an intermediary" when only a Via entry names it
    evidence: str  # the header that reveals it, as "name: value"

    def fix(self, kind: Kind) -> str | None:
        return PRODUCT_FIXES.get(self.name, {}).get(kind)


def _named(value: str) -> str | None:
    lowered = value.lower()
    return next((name for word, name in _NAMED if word in lowered), None)


def _from_via(value: str) -> list[Intermediary]:
    """One per Via entry ("1.1 varnish", "1.1 abc.cloudfront.net (CloudFront)"), unknown ones included."""
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    return [Intermediary(_named(entry) or "an intermediary", f"via: {entry}") for entry in entries]


def _from_server(value: str) -> list[Intermediary]:
    if any(origin in value.lower() for origin in _ORIGINS):
        return []
    name = _named(value)
    return [Intermediary(name, f"server: {value}")] if name else []


def _from_served_by(value: str) -> list[Intermediary]:
    """Fastly's caches (``cache-lhr7330-LHR``), not our API's ``<host>-<pid>-<hex>``."""
    caches = [part.strip() for part in value.split(",") if _FASTLY_CACHE.match(part.strip())]
    return [Intermediary(FASTLY, f"x-served-by: {value}")] if caches else []


def _from_x_cache(value: str, found: list[Intermediary]) -> list[Intermediary]:
    """X-Cache names CloudFront ("Miss from cloudfront"); otherwise it shows a cache, if none is named yet."""
    name = _named(value)
    if name is None and any(f.name in PRODUCT_FIXES for f in found):
        return []
    return [Intermediary(name or "a cache", f"x-cache: {value}")]


def identify(headers: Mapping[str, str]) -> list[Intermediary]:
    """The intermediaries the response headers reveal, each product once, in the order found.

    ``headers`` have lower-case names, as :class:`~streamcheck.timing.Measurement` keeps them.
    """
    found: list[Intermediary] = []
    found += _from_via(headers.get("via", ""))
    found += _from_server(headers.get("server", ""))
    found += _from_served_by(headers.get("x-served-by", ""))
    found += [Intermediary(name, f"{header}: {headers[header]}") for header, name in _PRESENT if header in headers]
    if "x-cache" in headers:
        found += _from_x_cache(headers["x-cache"], found)
    if any(f.name == FASTLY for f in found):
        # Fastly's caches are Varnish: its own name is the useful one.
        found = [f for f in found if f.name != VARNISH]
    return _unique(found)


def _unique(found: list[Intermediary]) -> list[Intermediary]:
    """Each product once (its first evidence); unnamed hops and caches each time they differ."""
    seen: set[str] = set()
    unique = []
    for f in found:
        key = f.name if f.name in PRODUCT_FIXES else f.evidence
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique
