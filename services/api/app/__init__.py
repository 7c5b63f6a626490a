"""Chat streaming API: a reply streamed as Server-Sent Events."""
