"""Reconnecting with Last-Event-ID resumes the reply: no gap, no repeat."""

import json

from app.twin import reply_tokens

from streamcheck import clients
from streamcheck.timing import Arrival, Measurement
from tests.integration.stack import REPLY_TOKENS, Stack

PAYLOAD = {"message": "resume me"}


def indices(m: Measurement) -> list[int]:
    return [json.loads(e.data)["index"] for e in m.events("token")]


def text(*ms: Measurement) -> str:
    return "".join(json.loads(e.data)["text"] for m in ms for e in m.events("token"))


def test_a_dropped_stream_resumes_after_the_last_event_seen(stack: Stack) -> None:
    def drop_at_20(arrival: Arrival) -> bool:
        return arrival.event.event == "token" and json.loads(arrival.event.data)["index"] == 19

    first = clients.with_requests(stack.url(), PAYLOAD, headers=stack.auth, on_arrival=drop_at_20)
    last_id = first.events("token")[-1].id
    assert last_id is not None
    second = clients.with_requests(stack.url(), PAYLOAD, headers={**stack.auth, "Last-Event-ID": last_id})

    assert indices(first) == list(range(20))
    assert indices(second) == list(range(20, REPLY_TOKENS))
    assert json.loads(second.events("start")[0].data)["resumed_from"] == 20
    assert second.closing_event == "end"
    assert text(first, second) == "".join(reply_tokens(REPLY_TOKENS))
    print(f"\nresumed: {len(indices(first))} + {len(indices(second))} tokens, 0 missing, 0 repeated")


def test_a_finished_reply_can_be_resumed_too(stack: Stack) -> None:
    full = clients.with_requests(stack.url(), PAYLOAD, headers=stack.auth)
    token_10 = full.events("token")[10].id
    assert token_10 is not None
    again = clients.with_requests(stack.url(), PAYLOAD, headers={**stack.auth, "Last-Event-ID": token_10})
    assert indices(again) == list(range(11, REPLY_TOKENS))
    assert again.closing_event == "end"


def test_an_unknown_event_id_gets_an_explicit_event_not_a_new_reply(stack: Stack) -> None:
    for bogus in ("msg_0000000000000000:3", "not-an-id"):
        m = clients.with_requests(stack.url(), PAYLOAD, headers={**stack.auth, "Last-Event-ID": bogus})
        assert m.status == 200
        assert [(e.event, json.loads(e.data)["code"]) for e in m.events()] == [("error", "resume_unavailable")]
