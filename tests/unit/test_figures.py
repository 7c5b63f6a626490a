"""tests/integration/figures.py: a figure a passing test reports reaches the
run's output, where the same test's print does not (pytest captures it)."""

import xml.etree.ElementTree as ET

import pytest

pytest_plugins = ["pytester"]

ROLLOUT = """
def test_rollout(figures):
    print("printed, and captured")
    figures("rollout in 31.4 s, 0 tokens lost")
"""


def test_a_figure_is_in_the_summary_of_a_captured_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_rollout=ROLLOUT)
    result = pytester.runpytest_inprocess("-p", "tests.integration.figures", "--junitxml=report.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= figures =*", "test_rollout.py::test_rollout: rollout in 31.4 s, 0 tokens lost"])
    # What the figures replace: the print is captured, so it never shows.
    assert "printed, and captured" not in result.stdout.str()
    properties = ET.parse(pytester.path / "report.xml").findall(".//testcase/properties/property")
    assert [(p.get("name"), p.get("value")) for p in properties] == [("figure", "rollout in 31.4 s, 0 tokens lost")]


def test_a_run_without_figures_has_no_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_quiet="def test_quiet():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "tests.integration.figures")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*= figures =*")
