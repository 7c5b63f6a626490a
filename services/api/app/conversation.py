"""Start a reply, or find the one a Last-Event-ID resumes: shared by both transports."""

import uuid

from app.replies import Reply, ReplyStore
from app.token_source import TokenSource


def open_reply(
    store: ReplyStore,
    source: TokenSource,
    *,
    subject: str,
    message: str,
    conversation_id: str | None,
    last_event_id: str | None,
) -> tuple[Reply | None, int]:
    """The reply to stream and the first token index to send.

    ``(None, 0)`` means the Last-Event-ID names no reply this subject may
    resume (unknown, expired, another conversation's or another subject's:
    the answer does not tell which). Raises :class:`app.replies.NotOwner`
    when a new message targets another subject's conversation, and
    :class:`app.replies.StoreFull` when no new reply can start.
    """
    if last_event_id is None:
        conversation_id = conversation_id or f"conv_{uuid.uuid4().hex}"
        store.claim(conversation_id, subject)
        reply = store.start(
            source, message, conversation_id=conversation_id, message_id=f"msg_{uuid.uuid4().hex}", subject=subject
        )
        return reply, 0
    message_id, _, index = last_event_id.rpartition(":")
    if not message_id or not index.isdigit():
        return None, 0
    found = store.get(message_id)
    if found is None or found.subject != subject or conversation_id not in (None, found.conversation_id):
        return None, 0
    return found, int(index) + 1
