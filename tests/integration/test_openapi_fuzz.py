"""A schemathesis run against the OpenAPI document, through the proxy.

schemathesis generates valid and invalid requests from /api/openapi.json
(bodies, headers, methods the route does not declare) and checks every
response: no 5xx, a documented status, content type and headers, bodies and
each Server-Sent Event that match their schemas, invalid input refused. The
JSON report (counts, seed, failures) is kept in test-artifacts/.

It runs against `proxy-fuzz`: the shipped proxy with the per-client limits
lifted, in front of an API whose replies are short (compose.test.yaml), so
every valid request's whole stream is read and checked in milliseconds.
"""

import json
import subprocess
import sys

from tests.integration.stack import ROOT, Stack

REPORT = ROOT / "test-artifacts" / "schemathesis.json"
EXAMPLES_PER_PHASE = 300


def test_the_api_survives_a_schemathesis_run(stack: Stack) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli",
        "run", stack.url("proxy-fuzz", "/api/openapi.json"),
        "--header", f"Authorization: Bearer {stack.token}",
        "--checks", "all",
        "--max-examples", str(EXAMPLES_PER_PHASE),
        "--workers", "4",
        "--request-timeout", "30",
        "--report", "json", "--report-json-path", str(REPORT),
        "--no-color",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)

    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    report = json.loads(REPORT.read_text())
    # Every operation: the stream and Stop.
    assert report["operations"] == {**report["operations"], "tested": 2, "total": 2, "errored": 0}
    cases = report["test_cases"]
    print(f"schemathesis: {json.dumps(cases)}, seed {report['seed']}, {report['running_time']:.1f} s")
    assert cases["with_failures"] == 0 and cases["errored"] == 0, cases
    # Enough cases ran to mean something (the coverage phase alone makes dozens).
    assert cases["generated"] >= 50, cases
    # The per-client limits are lifted: 429s would leave the API untested.
    assert report["warnings"]["rate_limited"] == [], report["warnings"]
