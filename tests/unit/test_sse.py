import pytest

from streamcheck.sse import Event, Parser

STREAM = (
    'event: start\r\ndata: {"a":1}\r\n\r\n'
    ": ping\n\n"
    'id: m:0\nevent: token\ndata: {"text":"مرحبا 👨‍👩‍👧‍👦 你好"}\n\n'
    "data: line one\rdata: line two\r\r"
    "retry: 2500\nevent: end\ndata: {}\n\n"
).encode()

EXPECTED = [
    Event("start", '{"a":1}'),
    Event("token", '{"text":"مرحبا 👨‍👩‍👧‍👦 你好"}', id="m:0"),
    Event("message", "line one\nline two"),
    Event("end", "{}", retry=2500),
]


def parse_in_pieces(data: bytes, cuts: list[int]) -> list[Event]:
    parser = Parser()
    events: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        events += parser.feed(data[start:end])
    return events + parser.close()


def test_whole_stream() -> None:
    assert parse_in_pieces(STREAM, []) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_a_cut_anywhere_changes_nothing(cut: int) -> None:
    # Includes cuts inside CRLF pairs and inside 2-, 3- and 4-byte characters.
    assert parse_in_pieces(STREAM, [cut]) == EXPECTED


def test_one_byte_at_a_time() -> None:
    assert parse_in_pieces(STREAM, list(range(1, len(STREAM)))) == EXPECTED


def test_comments_are_counted_not_dispatched() -> None:
    parser = Parser()
    assert parser.feed(b": ping\n\n: ping\n\n") == []
    assert parser.comments == 2


def test_an_unterminated_event_is_dropped_at_the_end() -> None:
    parser = Parser()
    assert parser.feed(b"event: token\ndata: half") == []
    assert parser.close() == []
