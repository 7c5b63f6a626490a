"""Start a reply, or find the one a Last-Event-ID resumes: shared by both transports."""

import uuid

from app.replies import Reply, ReplyStore
from app.token_source import TokenSource


def open_reply(
    store: ReplyStore,
    source: TokenSource,
    *,
    message: str,
    conversation_id: str | None,
    last_event_id: str | None,
) -> tuple[Reply | None, int]:
    """The reply to stream and the first token index to send.

    ``(None, 0)`` means the Last-Event-ID names no reply this process still
    has (unknown, expired, or of another conversation). Raises
    :class:`app.replies.StoreFull` when no new reply can start.
    """
    if last_event_id is None:
        reply = store.start(
            source,
            message,
            conversation_id=conversation_id or f"conv_{uuid.uuid4().hex}",
            message_id=f"msg_{uuid.uuid4().hex}",
        )
        return reply, 0
    message_id, _, index = last_event_id.rpartition(":")
    if not message_id or not index.isdigit():
        return None, 0
    found = store.get(message_id)
    if found is None or (conversation_id is not None and conversation_id != found.conversation_id):
        return None, 0
    return found, int(index) + 1
