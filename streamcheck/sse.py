"""An incremental parser for the text/event-stream format.

It is fed bytes exactly as they come off the network: a chunk may end in the
middle of a line, of a CRLF pair, or of a multi-byte UTF-8 character. Text is
decoded with an incremental decoder, the equivalent of the browser's
``TextDecoder('utf-8', {stream: true})``.
Ref: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"[\r\n]")


@dataclass(frozen=True)
class Event:
    """One dispatched event. ``id`` is this event's own id field, if any."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class Parser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._reset_event()
        self.comments = 0

    def _reset_event(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        self._text += self._decoder.decode(chunk)
        return self._drain(final=False)

    def close(self) -> list[Event]:
        """End of stream: an unterminated event is dropped, as the spec says."""
        self._text += self._decoder.decode(b"", final=True)
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[Event]:
        events: list[Event] = []
        text = self._text
        start = 0
        while (found := _LINE_END.search(text, start)) is not None:
            end = found.start()
            if text[end] == "\r":
                if end + 1 == len(text) and not final:
                    break  # maybe the first half of a CRLF: wait for the next chunk
                after = end + 2 if text.startswith("\n", end + 1) else end + 1
            else:
                after = end + 1
            event = self._line(text[start:end])
            if event is not None:
                events.append(event)
            start = after
        self._text = text[start:]
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            if not self._data:
                self._reset_event()
                return None
            event = Event(self._event or "message", "\n".join(self._data), self._id, self._retry)
            self._reset_event()
            return event
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None
