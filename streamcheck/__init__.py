"""Measure whether Server-Sent Events stream through a deployment or get buffered.

One measurement core shared by the integration tests, the probe and the
benchmark: :mod:`streamcheck.sse` parses the byte stream, :mod:`streamcheck.timing`
records when each event arrived and gives the verdict, and
:mod:`streamcheck.clients` drives real HTTP clients (requests, curl).
"""
