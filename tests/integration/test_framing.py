"""Text from the token source cannot forge or break events (CR, LF, NUL, "event:")."""

import json

from app.twin import FORGED_TOKENS

from streamcheck import clients
from tests.integration.stack import Stack


def test_hostile_token_text_arrives_as_data(stack: Stack) -> None:
    m = clients.with_requests(stack.url(), {"message": "/forge"}, headers=stack.auth)

    assert [e.event for e in m.events()] == ["start", *["token"] * len(FORGED_TOKENS), "end"]
    assert tuple(json.loads(e.data)["text"] for e in m.events("token")) == FORGED_TOKENS
    assert json.loads(m.events("end")[0].data)["tokens"] == len(FORGED_TOKENS)
