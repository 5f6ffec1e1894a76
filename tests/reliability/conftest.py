"""Fixtures of the reliability suite, and the summary of its campaigns at the end of a run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.campaign import FIGURES, RUNS_ENV


@pytest.fixture
def campaign_id(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's node id, for the replay command a failing campaign prints."""
    yield request.node.nodeid


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability campaigns")
    for figures in FIGURES:
        terminalreporter.write_line(figures.line())
    broken = sum(f.check_failures + f.wrong_restores + f.undetected + f.other_failures for f in FIGURES)
    terminalreporter.write_line(
        f"total: {sum(f.runs for f in FIGURES)} runs, {sum(f.faults for f in FIGURES)} faults injected, "
        f"{sum(f.check_failures for f in FIGURES)} repositories failing check, "
        f"{sum(f.wrong_restores for f in FIGURES)} restores with a wrong byte, {broken} broken runs "
        f"(a long campaign: {RUNS_ENV}=500 pytest -m campaign tests/reliability)"
    )
