import re

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        pytest.param("abc-123.def_4", True, id="valid"),
        pytest.param("bad id with spaces", False, id="spaces"),
        pytest.param("x" * 129, False, id="too-long"),
    ],
)
def test_request_id_is_kept_only_when_well_formed(client: TestClient, sent: str, kept: bool) -> None:
    returned = client.get("/readyz", headers={"X-Request-ID": sent}).headers["x-request-id"]
    assert (returned == sent) is kept
    if not kept:
        assert re.fullmatch(r"[0-9a-f]{32}", returned)


def test_a_request_id_is_made_when_none_is_sent(client: TestClient) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/readyz").headers["x-request-id"])
