"""Durations as the stack's configuration files write them, in seconds.

Compose ("30s", "1m30s"), nginx ("2s", "500ms", a bare number of seconds),
Prometheus and Grafana ("5s", "1m") and Kubernetes ("1h", "5m", "60") all
write them the same way; the unit tests (tests/unit) and the integration
tests (tests/integration/stack.py) read them with this one parser.
"""

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h)"


def seconds(duration: str | float) -> float:
    """``duration`` in seconds: a number (from YAML), a bare number of seconds
    ("45"), or parts with units ("1m30s", "500ms"). Anything else raises
    ValueError, so a value the tests cannot read is never taken for 0."""
    if isinstance(duration, int | float):
        return float(duration)
    text = duration.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not re.fullmatch(f"(?:{_PART})+", text):
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(number) * _UNITS[unit] for number, unit in re.findall(_PART, text))
