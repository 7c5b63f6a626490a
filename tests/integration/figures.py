"""Measured figures (a rollout's duration, replies cut and resumed, tokens
lost) in every run's output, not only under ``pytest -s``.

pytest captures what a passing test prints, so a figure printed by the test
never reaches ``make test``'s output. A test takes the ``figures`` fixture
and calls it with one line; the lines are printed together in a "figures"
section of the terminal summary, each after its test's id, and are kept in
the test's ``user_properties`` (a JUnit XML report carries them).

conftest.py imports the fixture and the hook, which is how pytest finds them.
"""

from collections.abc import Callable

import pytest

Figures = Callable[[str], None]
_KEY = pytest.StashKey[list[tuple[str, str]]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    reported = request.config.stash.setdefault(_KEY, [])

    def report(line: str) -> None:
        reported.append((request.node.nodeid, line))
        request.node.user_properties.append(("figure", line))

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    reported = config.stash.get(_KEY, [])
    if reported:
        terminalreporter.section("figures")
        for nodeid, line in reported:
            terminalreporter.write_line(f"{nodeid}: {line}")
