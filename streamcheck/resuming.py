"""A client that resumes a reply the way the page (and EventSource) does.

It sends the message; when the stream is cut, or ends with ``server_shutdown``
(a deploy), it waits the last ``retry:`` the server sent and sends the same
request again with ``Last-Event-ID: <id of the last token it got>``, until
the reply ends with ``end`` or another ``error``. It records every token by
index, so a test can count what was lost or repeated, and which process
(``X-Served-By``) served each connection.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from streamcheck.sse import Event, Parser

RECONNECT_AFTER = {"server_shutdown"}  # error codes that ask the client to reconnect


@dataclass
class Followed:
    tokens: dict[int, str] = field(default_factory=dict)
    repeated: int = 0  # tokens received more than once
    closing: Event | None = None  # the final end or error event
    served_by: list[str] = field(default_factory=list)  # X-Served-By, per connection
    statuses: list[int] = field(default_factory=list)  # HTTP status, per connection
    message_id: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.tokens[i] for i in sorted(self.tokens))

    @property
    def missing(self) -> int:
        return (max(self.tokens) + 1 - len(self.tokens)) if self.tokens else 0

    @property
    def closing_code(self) -> str | None:
        if self.closing is None:
            return None
        return "end" if self.closing.event == "end" else str(json.loads(self.closing.data).get("code"))


def follow(
    url: str,
    payload: dict[str, Any],
    *,
    headers: dict[str, str],
    max_connections: int = 10,
    read_timeout: float = 30,
) -> Followed:
    followed = Followed()
    last_id: str | None = None
    retry_ms = 3000
    with requests.Session() as session:
        for _ in range(max_connections):
            sent = {**headers, **({"Last-Event-ID": last_id} if last_id else {})}
            try:
                with session.post(url, json=payload, headers=sent, stream=True, timeout=(5, read_timeout)) as response:
                    followed.statuses.append(response.status_code)
                    followed.served_by.append(response.headers.get("X-Served-By", ""))
                    if response.status_code == 200:
                        parser = Parser()
                        for chunk in response.iter_content(chunk_size=None):
                            for event in parser.feed(chunk):
                                retry_ms = event.retry or retry_ms
                                if event.event == "start":
                                    followed.message_id = json.loads(event.data)["message_id"]
                                elif event.event == "token":
                                    index = json.loads(event.data)["index"]
                                    if index in followed.tokens:
                                        followed.repeated += 1
                                    followed.tokens[index] = json.loads(event.data)["text"]
                                    last_id = event.id
                                elif event.event in ("end", "error"):
                                    followed.closing = event
                                    if followed.closing_code not in RECONNECT_AFTER:
                                        return followed
            except requests.RequestException:
                pass  # cut: reconnect, as a browser does
            time.sleep(retry_ms / 1000)
    return followed


@dataclass(frozen=True)
class Tally:
    """What a set of followed replies of ``tokens`` tokens each lost or repeated."""

    replies: int
    resumed: int  # replies served by more than one connection
    elsewhere: int  # of those, by more than one process
    lost: int  # tokens never received
    repeated: int  # tokens received twice
    failed: list[tuple[str | None, list[int], list[str], int]]  # closing code, statuses, served by, tokens

    def __str__(self) -> str:
        return (
            f"{self.replies} replies: {self.resumed} resumed ({self.elsewhere} by another process),"
            f" {self.lost} tokens lost, {self.repeated} repeated, {len(self.failed)} not ended by `end`"
        )


def tally(results: list[Followed], tokens: int) -> Tally:
    resumed = [r for r in results if len(r.served_by) > 1]
    return Tally(
        replies=len(results),
        resumed=len(resumed),
        elsewhere=sum(1 for r in resumed if len(set(r.served_by)) > 1),
        lost=sum(tokens - len(r.tokens) for r in results),
        repeated=sum(r.repeated for r in results),
        failed=[(r.closing_code, r.statuses, r.served_by, len(r.tokens)) for r in results if r.closing_code != "end"],
    )
