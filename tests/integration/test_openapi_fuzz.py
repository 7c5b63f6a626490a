"""A schemathesis run against the OpenAPI document, through the proxy.

schemathesis generates valid and invalid requests from /api/openapi.json
(bodies, headers, methods the route does not declare) and checks every
response: no 5xx, a documented status, content type and headers, bodies and
each Server-Sent Event that match their schemas, invalid input refused. The
JSON report (counts, seed, failures) is kept in test-artifacts/.

It runs against `proxy-fuzz`: the shipped proxy with the per-client limits
lifted, in front of an API whose replies are short (compose.test.yaml), so
every valid request's whole stream is read and checked in milliseconds.
That API runs in production mode, as shipped (the main test API runs in
development, for the twin's test hooks), so this file also checks what
production serves: the schema, and no interactive docs page.
"""

import json
import subprocess
import sys

import requests

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


def test_production_serves_the_schema_but_not_the_docs_page(stack: Stack) -> None:
    schema = requests.get(stack.url("proxy-fuzz", "/api/openapi.json"), timeout=10)
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "Chat streaming API"
    # /api/docs exists in development only (app/main.py): here it is the
    # API's own 404 (X-Served-By: a replica answered, not the proxy).
    docs = requests.get(stack.url("proxy-fuzz", "/api/docs"), timeout=10)
    assert (docs.status_code, docs.headers["content-type"]) == (404, "application/json")
    assert docs.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    assert "x-served-by" in docs.headers
