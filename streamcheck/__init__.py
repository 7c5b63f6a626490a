"""Measure whether Server-Sent Events stream through a deployment or get buffered.

One measurement core shared by the integration tests, the probe and the
benchmark: :mod:`streamcheck.sse` parses the byte stream, :mod:`streamcheck.timing`
records when each event arrived and gives the verdict,
:mod:`streamcheck.intermediaries` names the hops a response's headers reveal
and their own fixes, and :mod:`streamcheck.clients` drives real HTTP clients
(requests, curl).
"""
