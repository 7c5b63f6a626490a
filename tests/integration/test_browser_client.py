"""The chat page in a real browser (Debian's Chromium, driven by Playwright)
through nginx: exact multi-byte text, progressive rendering, over HTTPS with
HTTP/2 too, the fallback to the WebSocket behind a buffering proxy, and a
screenshot."""

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from app.twin import reply_tokens
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.integration.stack import REPLY_TOKENS, ROOT, TOKEN_DELAY_SECONDS, Stack

# Debian's Chromium by default; Playwright's own browser download is never used.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
EXPECTED = "".join(reply_tokens(REPLY_TOKENS))
# "/split" makes the API cut every multi-byte character across two network
# writes (a test hook), so the page's decoder must join them.
SPLIT = "/split مرحبا 👋🏽"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: install it (apt-get install chromium) or set CHROMIUM=/path")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 900, "height": 900})
    yield context.new_page()
    context.close()


def chat(page: Page, url: str, message: str) -> tuple[dict[str, Any], str]:
    page.goto(url)
    page.fill("#message", message)
    page.click("button[type=submit]")
    # Waits on what a person sees; a script predicate would need the page's
    # CSP to allow eval, which it rightly does not.
    expect(page.locator("#state")).to_have_text(re.compile("^(done|failed)$"), timeout=30_000)
    state: dict[str, Any] = page.evaluate("window.chat")
    return state, page.locator(".assistant").last.inner_text()


def test_the_page_renders_split_characters_exactly(stack: Stack, page: Page) -> None:
    state, text = chat(page, stack.page_url(path="/"), SPLIT)

    assert (state["state"], state["transport"]) == ("done", "SSE")
    assert text == EXPECTED
    assert "\ufffd" not in text


def test_without_stream_decoding_the_same_stream_shows_replacement_characters(stack: Stack, page: Page) -> None:
    # Negative control: the page's deliberately broken decoder (each chunk
    # decoded on its own) shows what the test above guards against.
    _, text = chat(page, stack.page_url(path="/?decoder=naive"), SPLIT)
    assert "\ufffd" in text


def test_tokens_appear_progressively(stack: Stack, page: Page) -> None:
    state, _ = chat(page, stack.page_url(path="/"), "show me streaming")

    times = [entry["t"] / 1000 for entry in state["timeline"]]
    assert len(times) == REPLY_TOKENS
    generation = REPLY_TOKENS * TOKEN_DELAY_SECONDS
    # DOM updates spread over the generation time, the first long before the last.
    assert times[-1] - times[0] >= 0.6 * generation, times
    assert state["ttftMs"] / 1000 < (times[-1] - times[0]) / 4, state["ttftMs"]
    print(f"\nbrowser: time to first token {state['ttftMs']:.0f} ms; tokens over {times[-1] - times[0]:.2f} s")


def test_the_page_streams_over_https_with_http2(stack: Stack, browser: Browser) -> None:
    # The development certificate is self-signed: the browser is told to
    # accept it (the Python clients verify it in test_tls_through_proxy.py).
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        state, text = chat(page, f"{stack.https_url(path='/')}#token={stack.token}", "over HTTP/2")

        assert (state["state"], state["transport"]) == ("done", "SSE")
        assert text == EXPECTED
        times = [entry["t"] / 1000 for entry in state["timeline"]]
        assert times[-1] - times[0] >= 0.6 * REPLY_TOKENS * TOKEN_DELAY_SECONDS, times
        protocols = page.evaluate(
            "performance.getEntries().filter(e => e.name.includes('/api/chat/message/stream'))"
            ".map(e => e.nextHopProtocol)"
        )
        assert protocols == ["h2"]
    finally:
        context.close()


def test_behind_a_buffering_proxy_the_page_falls_back_to_the_websocket(stack: Stack, page: Page) -> None:
    state, text = chat(page, stack.page_url("proxy-buffering", "/?firstByteTimeout=1000"), "are you there?")

    assert (state["state"], state["transport"]) == ("done", "WebSocket")
    assert text == EXPECTED
    assert "switching to WebSocket" in page.locator(".notice").first.inner_text()


def test_screenshot_of_a_conversation(stack: Stack, page: Page) -> None:
    chat(page, stack.page_url(path="/"), "مرحبا! 你好! Hello! 👋🏽")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "browser-conversation.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def test_stop_ends_the_reply_and_send_waits_for_it(stack: Stack, page: Page) -> None:
    page.goto(stack.page_url(path="/"))
    page.fill("#message", "/pace 100 200")  # 20 s unless stopped
    page.click("#send")
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator("#send")).to_be_disabled()
    expect(page.locator(".assistant").last).to_contain_text("Hello", timeout=10_000)
    page.click("#stop")
    expect(page.locator("#state")).to_have_text("stopped", timeout=10_000)
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#send")).to_be_enabled()
    state: dict[str, Any] = page.evaluate("window.chat")
    assert state["finishReason"] == "stopped" and 0 < len(state["timeline"]) < 200


def test_the_page_finishes_a_reply_through_a_restart_of_the_replica_making_it(stack: Stack, page: Page) -> None:
    import subprocess

    import redis

    page.goto(stack.page_url(path="/"))
    page.fill("#message", "/pace 50 120")  # 6 s
    page.click("#send")
    expect(page.locator(".assistant").last).to_contain_text("Hello", timeout=10_000)
    message_id = page.evaluate("window.chat.messageId")
    client = redis.Redis.from_url(
        f"redis://{stack.valkey_address()}/0", password=stack.valkey_password, decode_responses=True
    )
    producer = str(client.hget(f"chat:reply:{message_id}", "producer"))
    client.close()
    container = stack.container_of(producer)
    subprocess.run(["docker", "restart", "--time", "30", container], check=True, capture_output=True)

    expect(page.locator("#state")).to_have_text(re.compile("^(done|failed)$"), timeout=30_000)
    assert page.locator("#state").inner_text() == "done"
    assert page.locator(".assistant").last.inner_text() == "".join(reply_tokens(120))
    notices = page.locator(".notice").all_inner_texts()
    assert any("resuming" in notice for notice in notices), notices  # it did reconnect
    stack.wait_until_serving()


def test_without_a_token_the_page_says_what_to_do(stack: Stack, page: Page) -> None:
    page.goto(stack.url(path="/"))  # no #token=
    expect(page.locator(".notice.setup")).to_contain_text("make token")
    expect(page.locator("#send")).to_be_disabled()
    assert page.locator("#state").inner_text() == "no token"


def test_a_streaming_reply_shows_a_cursor_until_it_ends(stack: Stack, page: Page) -> None:
    page.goto(stack.page_url(path="/"))
    page.fill("#message", "/pace 100 30")
    page.click("#send")
    expect(page.locator(".assistant.streaming")).to_have_count(1)
    expect(page.locator("#state")).to_have_text("done", timeout=15_000)
    expect(page.locator(".assistant.streaming")).to_have_count(0)
