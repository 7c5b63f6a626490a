"""Probe a deployment: does a chat reply stream through it, or is it buffered?

    python -m streamcheck.probe https://chat.example.com/api/chat/message/stream [--token T] [--http2] [--json]

It sends one chat message, times every event as it arrives, and prints the
headers that matter, the time to first byte and to first token, the gaps
between events, the bursts, the intermediaries the headers name, and a
verdict with every cause found, in the order to fix them, each with its fix
(and the named product's own setting).
The exit status is 0 only when the reply streamed, or came in batches that
add no more than --max-added-delay-ms to any token, so it can gate a
deployment pipeline; 1 for any other verdict, 2 for bad arguments.
"""

import argparse
import json
import os
import ssl
import statistics
import sys
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from streamcheck import clients
from streamcheck.intermediaries import Intermediary, identify
from streamcheck.timing import MAX_ADDED_DELAY_SECONDS, Cause, Kind, Measurement, Verdict, bursts, classify

HEADERS_THAT_MATTER = (
    ":protocol", "content-type", "content-encoding", "content-length", "transfer-encoding", "cache-control",
    "x-accel-buffering", "via", "server", "cf-ray", "cf-cache-status", "x-cache", "x-served-by", "x-amz-cf-id",
    "x-amz-cf-pop", "x-varnish", "fly-request-id", "x-envoy-upstream-service-time", "x-request-id",
)  # fmt: skip

FIXES = {
    Kind.STREAMING: "Nothing to fix.",
    Kind.COALESCED: (
        "An intermediary passes the stream on as it is made, but a few events per write. Likely causes: Nagle's "
        "algorithm waiting for a delayed ACK on a hop without TCP_NODELAY (40 ms on Linux, up to 200 ms "
        "elsewhere; HAProxy: `option http-no-delay`), a proxy's flush interval (Traefik `flushInterval`, Caddy "
        "`flush_interval -1`), or a minimum write size (a buffer that must fill before a write). Make that hop "
        "flush every write."
    ),
    Kind.BUFFERED: (
        "An intermediary holds the response until a buffer fills or the reply ends. nginx: `proxy_buffering off` "
        "in the streaming location only (services/nginx/snippets/location/streaming.conf), and do not ignore "
        "X-Accel-Buffering. AWS ALB/CloudFront or a CDN: see the README's guidance for intermediaries; "
        "if it cannot be configured, use the WebSocket fallback (/api/chat/message/ws)."
    ),
    Kind.COMPRESSED: (
        "An intermediary compresses the event stream, and compression holds output until its buffer fills. "
        "Turn compression off for text/event-stream (nginx: `gzip off` in the streaming location; "
        "Cloudflare: a rule that bypasses compression for this path). The API sends Cache-Control: no-transform."
    ),
    Kind.IDLE_TIMEOUT: (
        "The connection was closed after a silence: an idle timeout on the path (nginx proxy_read_timeout, "
        "AWS ALB idle timeout, 60 s by default; Cloudflare, about 100 s). Send heartbeats more often than the "
        "shortest of them (CHAT_HEARTBEAT_SECONDS), or raise it (README: Timeouts in the chain)."
    ),
    Kind.CUT: (
        "The stream ended without its closing event: the server or an intermediary closed it (a restart, a "
        "crash, a response size or time limit). Look up the request id in the API's logs."
    ),
    Kind.ERROR: "The request failed or the reply ended with an error event: see the status and the error above.",
    Kind.INCONCLUSIVE: "Too few events to judge: ask for a longer reply (--message) and probe again.",
}


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _batching(verdict: Verdict) -> dict[str, Any] | None:
    b = verdict.batching
    if b is None:
        return None
    return {
        "batches": b.batches,
        "events_per_read": b.events_per_read,
        "largest_share": b.largest_share,
        "bytes_per_read": b.bytes_per_read,
        "interval_seconds": _rounded(b.interval),
        "pacing_seconds": _rounded(b.pacing),
        "added_delay_seconds": _rounded(b.added_delay),
        "max_added_delay_seconds": verdict.max_added_delay,
    }


def _silence(verdict: Verdict) -> dict[str, Any] | None:
    s = verdict.silence
    if s is None:
        return None
    return {
        "seconds": _rounded(s.seconds),
        "median_gap_seconds": _rounded(s.median_gap),
        "longest_gap_seconds": _rounded(s.longest_gap),
        "heartbeat_seconds": _rounded(s.heartbeat),
        "declared_heartbeat_seconds": s.declared_heartbeat,
        "idle_threshold_seconds": _rounded(s.threshold),
        "held_back_seconds": _rounded(s.held_back),
    }


def _cause(cause: Cause, named: list[Intermediary]) -> dict[str, Any]:
    products = {i.name: fix for i in named if (fix := i.fix(cause.kind)) is not None}
    return {"verdict": cause.kind.value, "reason": cause.reason, "fix": FIXES[cause.kind], "products": products}


# A failed request's exception text, and the one line a person needs instead.
_FAILURE_HINTS = (
    (("Connection refused", "ConnectionRefused"),
     "nothing answers at that address: is the stack up (make up), and the port right?"),
    (("Name or service not known", "NameResolution", "getaddrinfo", "nodename nor servname"),
     "unknown host: check the host name in the URL"),
    (("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"),
     "the server's TLS certificate is not trusted: for make up's development certificate pass "
     "--cacert certs/tls.crt (make probe ... ARGS=\"--cacert certs/tls.crt\")"),
    (("timed out", "Timeout"), "no answer in time: a firewall, or the wrong port"),
)  # fmt: skip
_STATUS_HINTS = {
    401: "the request needs a bearer token: `make token` prints one for the local stack; "
    "pass it as make probe TOKEN=... (or --token / PROBE_TOKEN)",
    403: "the token lacks the chat:stream scope",
    429: "too many streams from this client: wait a second (Retry-After) and probe again",
}


def _error(m: Measurement) -> Any:
    """What went wrong, in the server's own words where it said any."""
    event = next((json.loads(e.data) for e in m.events("error")), None)
    if event is not None:
        return event
    if m.status and m.status != 200:
        try:
            return json.loads(m.body)["error"]
        except (ValueError, KeyError, TypeError):
            return m.body[:300].decode(errors="replace") or None
    if m.failure:
        return next((hint for needles, hint in _FAILURE_HINTS if any(n in m.failure for n in needles)), m.failure)
    return None


def report(url: str, m: Measurement, verdict: Verdict) -> dict[str, Any]:
    """Everything measured, and the verdict: ``verdict``, ``reason`` and ``fix`` as always (``fix`` is
    the first one to apply), ``verdicts`` and ``causes`` for every cause, in the order to fix them."""
    times = m.times("token")
    gaps = [b - a for a, b in pairwise(times)]
    named = [] if verdict.streaming else identify(m.headers)
    return {
        "url": url,
        "status": m.status,
        "headers": {name: m.headers[name] for name in HEADERS_THAT_MATTER if name in m.headers},
        "first_byte_seconds": m.first_byte_seconds,
        "first_token_seconds": times[0] if times else None,
        "last_token_seconds": times[-1] if times else None,
        "events": len(m.arrivals),
        "tokens": len(times),
        "heartbeats": m.comments,
        "bursts": len(bursts(times)),
        "gap_median_seconds": statistics.median(gaps) if gaps else None,
        "gap_max_seconds": max(gaps) if gaps else None,
        "arrivals": [{"seconds": round(a.seconds, 4), "event": a.event.event, "id": a.event.id} for a in m.arrivals],
        "error": _error(m),
        "hint": _STATUS_HINTS.get(m.status),
        "verdict": verdict.kind.value,
        "reason": verdict.reason,
        "fix": FIXES[verdict.kinds[0]],
        "passed": verdict.passed,
        "verdicts": [kind.value for kind in verdict.kinds],
        "causes": [_cause(cause, named) for cause in verdict.causes],
        "intermediaries": [{"name": i.name, "evidence": i.evidence} for i in named],
        "notes": list(verdict.notes),
        "batching": _batching(verdict),
        "silence": _silence(verdict),
    }


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def _batching_line(b: dict[str, Any]) -> str:
    interval = _seconds(b["interval_seconds"])
    added = _seconds(b["added_delay_seconds"])
    return (
        f"batches: {b['batches']}, every {interval}, {b['events_per_read']:g} events and about "
        f"{b['bytes_per_read']} bytes per read; pacing {_seconds(b['pacing_seconds'])}; largest added delay "
        f"{added} (limit {_seconds(b['max_added_delay_seconds'])})"
    )


def _silence_line(s: dict[str, Any]) -> str:
    heartbeat = _seconds(s["heartbeat_seconds"]) if s["heartbeat_seconds"] is not None else "none seen"
    held = f", {_seconds(s['held_back_seconds'])} more held back by a hop's batching" if s["held_back_seconds"] else ""
    return (
        f"silence before the end: {_seconds(s['seconds'])} (median gap {_seconds(s['median_gap_seconds'])}, "
        f"longest {_seconds(s['longest_gap_seconds'])}, heartbeats {heartbeat}{held}; an idle cut is a silence "
        f"over {_seconds(s['idle_threshold_seconds'])})"
    )


def _causes_lines(r: dict[str, Any]) -> list[str]:
    """Several causes: each with its fixes, numbered in the order to apply them. One: its product's fix."""
    if r["verdict"] == Kind.STREAMING:
        return []
    if len(r["causes"]) == 1:
        return [f"fix for {name}: {fix}" for name, fix in r["causes"][0]["products"].items()]
    lines = ["causes, in the order to fix them:"]
    for number, cause in enumerate(r["causes"], 1):
        lines += [f"  {number}. {cause['verdict']}: {cause['reason']}", f"     fix: {cause['fix']}"]
        lines += [f"     {name}: {fix}" for name, fix in cause["products"].items()]
    return lines


def text(r: dict[str, Any]) -> str:
    lines = [f"probe  {r['url']}", f"status {r['status']}"]
    lines += [f"  {name}: {value}" for name, value in r["headers"].items()]
    lines += [
        f"first byte {_seconds(r['first_byte_seconds'])}, first token {_seconds(r['first_token_seconds'])}, "
        f"last token {_seconds(r['last_token_seconds'])}",
        f"{r['tokens']} tokens in {r['bursts']} burst{'' if r['bursts'] == 1 else 's'}; "
        f"gaps: median {_seconds(r['gap_median_seconds'])}, "
        f"max {_seconds(r['gap_max_seconds'])}; {r['heartbeats']} heartbeats",
    ]
    arrivals = " ".join(f"{a['seconds']:.2f}" for a in r["arrivals"][:60])
    lines.append(f"arrivals (s): {arrivals}{' ...' if len(r['arrivals']) > 60 else ''}")
    if r["batching"] and r["batching"]["interval_seconds"] is not None and r["verdict"] != Kind.STREAMING:
        lines.append(_batching_line(r["batching"]))
    if r["silence"]:
        lines.append(_silence_line(r["silence"]))
    if r["error"]:
        error = r["error"]
        if isinstance(error, dict) and "code" in error:
            error = f"{error['code']}: {error.get('message', '')}"
        lines.append(f"error: {error}")
    if r.get("hint"):
        lines.append(f"hint: {r['hint']}")
    lines += [f"intermediary: {i['name']} ({i['evidence']})" for i in r["intermediaries"]]
    lines += _causes_lines(r)
    lines += [f"note: {note}" for note in r["notes"]]
    also = [v for v in r["verdicts"] if v != r["verdict"]]
    more = f"; also: {', '.join(also)} (fix in the order above)" if also else ""
    if r["verdict"] == Kind.ERROR and r["error"]:
        # The error line above says what happened, once, in plain words.
        lines.append("verdict: ERROR (see the error above)")
        return "\n".join(lines)
    lines += [
        f"verdict: {r['verdict'].upper()} ({r['reason']}){more}",
        f"fix: {r['fix']}",
    ]
    return "\n".join(lines)


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0:  # negative, or nan
        raise argparse.ArgumentTypeError(f"{value} is not a number of zero or more")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamcheck.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the streaming endpoint, e.g. http://localhost:8080/api/chat/message/stream")
    parser.add_argument("--token", help="bearer token, sent as Authorization: Bearer ... (default: $PROBE_TOKEN)")
    parser.add_argument("--message", default="Hello from the probe: مرحبا 👋", help="the chat message to send")
    parser.add_argument("--http2", action="store_true", help="use HTTP/2 (h2c prior knowledge on http:// URLs)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    parser.add_argument("--cacert", help="trust this certificate (e.g. certs/tls.crt from make up)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds without data before giving up")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--max-added-delay-ms",
        type=_non_negative,
        default=MAX_ADDED_DELAY_SECONDS * 1000,
        help="a reply passed on in batches (coalesced) passes while no token is held longer than this beyond "
        "the stream's own pacing (default: %(default)g ms, under what a reader notices)",
    )
    parser.add_argument(
        "--heartbeat-seconds",
        type=_non_negative,
        help="the API's heartbeat interval (CHAT_HEARTBEAT_SECONDS; 0: off), to judge the silence before a cut",
    )
    args = parser.parse_args(argv)

    # From the environment too (make probe passes it so), so a token need not
    # appear on a command line, in a process list or in CI logs.
    token = args.token or os.environ.get("PROBE_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    payload = {"message": args.message}
    if args.http2 or args.insecure or args.cacert:
        verify: bool | ssl.SSLContext = True
        if args.insecure:
            verify = False
        elif args.cacert:
            verify = ssl.create_default_context(cafile=args.cacert)
        m = clients.with_httpx(
            args.url, payload, headers=headers, timeout=args.timeout, http2=args.http2, verify=verify
        )
    else:
        m = clients.with_requests(args.url, payload, headers=headers, timeout=args.timeout)
    verdict = classify(m, max_added_delay=args.max_added_delay_ms / 1000, heartbeat_seconds=args.heartbeat_seconds)
    result = report(args.url, m, verdict)
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else text(result))
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
