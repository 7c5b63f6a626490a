import pytest

from streamcheck.intermediaries import PRODUCT_FIXES, Intermediary, identify
from streamcheck.timing import Kind

OUR_API = "0f3c2a9d1b7e-7-3fa9c2"  # X-Served-By: <host>-<pid>-<hex>, app.reply_store.process_id


@pytest.mark.parametrize(
    ("headers", "names"),
    [
        pytest.param({"server": "nginx"}, ["nginx"], id="nginx"),
        pytest.param({"server": "openresty/1.25.3.1"}, ["nginx"], id="openresty"),
        pytest.param({"server": "cloudflare", "cf-ray": "8a1b2c3d4e5f-AMS"}, ["Cloudflare"], id="cloudflare"),
        pytest.param(
            {
                "via": "1.1 3f1a.cloudfront.net (CloudFront)",
                "x-cache": "Miss from cloudfront",
                "x-amz-cf-id": "abc==",
            },
            ["AWS CloudFront"],
            id="cloudfront",
        ),
        pytest.param({"server": "awselb/2.0"}, ["AWS ALB/ELB"], id="alb"),
        pytest.param(
            {"via": "1.1 varnish", "x-served-by": "cache-ams21080-AMS, cache-lcy-EGLL1980-LCY", "x-cache": "MISS"},
            ["Fastly"],
            id="fastly",
        ),
        pytest.param({"via": "1.1 varnish (Varnish/7.5)", "x-varnish": "32770 3"}, ["Varnish"], id="varnish"),
        pytest.param({"fly-request-id": "01J0-iad"}, ["Fly.io proxy"], id="fly"),
        pytest.param({"server": "istio-envoy", "x-envoy-upstream-service-time": "3"}, ["Envoy"], id="envoy"),
        pytest.param({"via": "1.1 Caddy"}, ["Caddy"], id="caddy"),
        pytest.param({"server": "Apache/2.4.62 (Debian)"}, ["Apache httpd (mod_proxy)"], id="apache"),
        pytest.param({"via": "1.1 google"}, ["Google Cloud load balancer"], id="google"),
        pytest.param({"via": "1.1 proxy.corp.example"}, ["an intermediary"], id="unknown-via"),
        pytest.param({"x-cache": "HIT"}, ["a cache"], id="unknown-cache"),
        pytest.param(
            {"server": "nginx", "cf-ray": "8a1b2c3d4e5f-AMS"}, ["nginx", "Cloudflare"], id="cloudflare-in-front"
        ),
        # Not intermediaries: our API's process id, and the origin server itself.
        pytest.param({"x-served-by": OUR_API}, [], id="our-x-served-by"),
        pytest.param({"server": "uvicorn"}, [], id="origin-server"),
        pytest.param({}, [], id="no-headers"),
    ],
)
def test_identify(headers: dict[str, str], names: list[str]) -> None:
    assert [i.name for i in identify(headers)] == names


def test_evidence_is_the_header() -> None:
    assert identify({"server": "nginx", "x-served-by": OUR_API}) == [Intermediary("nginx", "server: nginx")]


def test_product_fixes() -> None:
    nginx = Intermediary("nginx", "server: nginx")
    fix = nginx.fix(Kind.BUFFERED)
    assert fix is not None and "`proxy_buffering off;`" in fix
    assert nginx.fix(Kind.STREAMING) is None
    assert Intermediary("an intermediary", "via: 1.1 x").fix(Kind.BUFFERED) is None


@pytest.mark.parametrize(
    ("product", "kind", "setting"),
    [
        ("nginx", Kind.COMPRESSED, "`gzip off;`"),
        ("Cloudflare", Kind.BUFFERED, "Cache Rule"),
        ("Cloudflare", Kind.COMPRESSED, "Compression Rule"),
        ("Varnish", Kind.BUFFERED, "`set beresp.do_stream = true;`"),
        ("Varnish", Kind.COMPRESSED, "`set beresp.do_gzip = false;`"),
        ("HAProxy", Kind.BUFFERED, "`option http-buffer-request` buffers only the request"),
        ("HAProxy", Kind.COALESCED, "`option http-no-delay`"),
        ("HAProxy", Kind.IDLE_TIMEOUT, "`timeout server`"),
        ("Apache httpd (mod_proxy)", Kind.BUFFERED, "`flushpackets=on`"),
        ("Apache httpd (mod_proxy)", Kind.COMPRESSED, "`SetEnv no-gzip 1`"),
        ("Caddy", Kind.COALESCED, "`flush_interval -1`"),
        ("Traefik", Kind.COMPRESSED, "`excludedContentTypes: [text/event-stream]`"),
        ("Traefik", Kind.COALESCED, "`responseForwarding.flushInterval`"),
        ("Envoy", Kind.CUT, "`timeout: 0s`"),
        ("Envoy", Kind.IDLE_TIMEOUT, "`stream_idle_timeout`"),
        ("AWS CloudFront", Kind.IDLE_TIMEOUT, "Response timeout (30 s by default)"),
        ("AWS ALB/ELB", Kind.IDLE_TIMEOUT, "`idle_timeout.timeout_seconds` (60 s by default)"),
    ],
)
def test_the_named_settings(product: str, kind: Kind, setting: str) -> None:
    assert setting in PRODUCT_FIXES[product][kind]


def test_fixes_are_only_for_verdicts_with_something_to_fix() -> None:
    for fixes in PRODUCT_FIXES.values():
        assert fixes and not {Kind.STREAMING, Kind.INCONCLUSIVE, Kind.ERROR} & set(fixes)
        assert all(fix and not fix.endswith(".") for fix in fixes.values())
