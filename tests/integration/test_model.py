"""A real model server behind the stack: llama.cpp's OpenAI-compatible server
with SmolLM2-135M-Instruct on the CPU, one slot (compose's `model` profile;
compose.test.yaml's api-model behind proxy-model, and the negative control
api-model-no-cancel behind proxy-model-no-cancel).

The server serves one request at a time: a request waits until the reply
before it has ended. So a request's time to first token says whether the
reply before it really stopped when its client let it go: at once when the
upstream request was closed (Stop, or the client leaving), after the rest of
that reply when it was not (the negative control, whose API leaves the
upstream request running).

The test stack brings the `model` profile up (images.PROFILES), with a random
MODEL_API_KEY (conftest.py).
"""

import json
import time
from dataclasses import dataclass

import pytest
import requests

from streamcheck import clients
from streamcheck.timing import Arrival, Measurement, classify
from tests.integration.stack import Stack

# A request that keeps SmolLM2 busy up to CHAT_OPENAI_MAX_TOKENS (200).
LONG = "Count from 1 to 500, one number per line, and nothing else."
SHORT = "Say hello in one short sentence."
LET_GO_AFTER = 3  # tokens


def reply_text(m: Measurement) -> str:
    return "".join(json.loads(event.data)["text"] for event in m.events("token"))


def closing(m: Measurement) -> dict[str, object]:
    data: dict[str, object] = json.loads(m.events()[-1].data)
    return data


def started(m: Measurement) -> dict[str, str]:
    data: dict[str, str] = json.loads(m.events("start")[0].data)
    return data


def ask(stack: Stack, proxy: str, message: str, **body: str) -> Measurement:
    m = clients.with_requests(stack.url(proxy), {"message": message, **body}, headers=stack.auth, timeout=120)
    assert m.status == 200 and m.failure is None, (m.status, m.failure)
    return m


def wait_until_idle(stack: Stack, proxy: str) -> None:
    """A short request goes through: nothing before it still holds the slot."""
    ask(stack, proxy, SHORT)


def test_a_multi_turn_exchange_streams_through_nginx(stack: Stack) -> None:
    wait_until_idle(stack, "proxy-model")
    first = ask(stack, "proxy-model", "My name is Ana and I live in Lisbon. Greet me.")
    verdict = classify(first)
    # The model writes a token every 15-20 ms, about as often as this
    # client's reads come: two tokens in one read is "coalesced", which
    # passes (as the probe's gate does) when no token is held past 100 ms.
    assert verdict.passed, verdict
    assert first.closing_event == "end"
    conversation = started(first)["conversation_id"]
    second = ask(stack, "proxy-model", "Where do I live?", conversation_id=conversation)
    assert classify(second).passed and second.closing_event == "end"
    # The second prompt carried the first turn: at temperature 0 with a seed
    # the model answers a prompt the same way every time, so the same
    # question in a new conversation (no history) gets another answer.
    alone = ask(stack, "proxy-model", "Where do I live?")
    print(f"\nturn 1: {reply_text(first)!r}\nturn 2: {reply_text(second)!r}\nalone: {reply_text(alone)!r}")
    assert reply_text(second) != reply_text(alone)
    assert reply_text(alone) == reply_text(ask(stack, "proxy-model", "Where do I live?"))  # reproducible
    # Where the server reports usage (stream_options.include_usage), the
    # second prompt's token count includes the first turn too.
    usage_1, usage_2 = closing(first).get("usage"), closing(second).get("usage")
    if isinstance(usage_1, dict) and isinstance(usage_2, dict):
        assert usage_2["prompt_tokens"] >= usage_1["prompt_tokens"] + usage_1["completion_tokens"], (usage_1, usage_2)


def test_the_text_is_valid_utf8_across_chunk_cuts(stack: Stack) -> None:
    m = ask(stack, "proxy-model", "Write the words café, naïve, Ελλάδα, 日本 and 🙂 on one line.")
    body = m.body.decode("utf-8")  # strict: raises on a character cut and not rejoined
    text = reply_text(m)
    assert "\ufffd" not in body and "\ufffd" not in text, text
    assert m.closing_event == "end"


@dataclass
class LetGo:
    tokens_seen: int
    next_first_token: float  # seconds from the next request to its first token


def let_go_then_ask(stack: Stack, proxy: str, how: str) -> LetGo:
    """A long reply, let go after LET_GO_AFTER tokens (Stop, or the client
    leaves), then at once a short request: its time to first token."""
    message_id = ""
    seen = 0

    def on_arrival(arrival: Arrival) -> bool:
        nonlocal message_id, seen
        if arrival.event.event == "start":
            message_id = json.loads(arrival.event.data)["message_id"]
        if arrival.event.event != "token":
            return False
        seen += 1
        if seen == LET_GO_AFTER and how == "stop":
            stop = requests.post(stack.url(proxy, f"/api/chat/message/{message_id}/stop"), headers=stack.auth)
            assert stop.status_code in (200, 202), stop.text
        return seen >= LET_GO_AFTER and how == "abandon"  # True: stop reading, the connection closes

    clients.with_requests(stack.url(proxy), {"message": LONG}, headers=stack.auth, on_arrival=on_arrival, timeout=120)
    after = ask(stack, proxy, SHORT)
    return LetGo(seen, after.times("token")[0])


def full_reply(stack: Stack) -> tuple[int, float]:
    """Tokens and seconds of the long reply left to run to its end."""
    began = time.perf_counter()
    m = ask(stack, "proxy-model", LONG)
    return len(m.events("token")), time.perf_counter() - began


@pytest.mark.parametrize("how", ["stop", "abandon"])
def test_letting_a_reply_go_frees_the_models_slot_at_once(stack: Stack, how: str) -> None:
    wait_until_idle(stack, "proxy-model")
    tokens, seconds = full_reply(stack)
    assert tokens >= 100, f"the long reply is too short ({tokens} tokens) to show a busy model"
    remaining = seconds * (tokens - LET_GO_AFTER) / tokens

    freed = let_go_then_ask(stack, "proxy-model", how)
    assert freed.next_first_token < min(1.0, remaining / 4), (freed, remaining)

    # Negative control: the same, with an API whose source ignores cancellation.
    wait_until_idle(stack, "proxy-model-no-cancel")
    busy = let_go_then_ask(stack, "proxy-model-no-cancel", how)
    assert busy.next_first_token > remaining / 2, (busy, remaining)
    print(
        f"\n{how}: next first token after {freed.next_first_token:.3f} s; without cancellation "
        f"{busy.next_first_token:.3f} s (the long reply: {tokens} tokens in {seconds:.2f} s)"
    )
