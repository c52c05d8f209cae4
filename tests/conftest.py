"""Markers by place: a test under tests/unit is ``unit``, one under tests/e2e is ``e2e``, and one using the
``daemon`` fixture is also ``containerd``; so ``-m`` selects by kind without anyone marking by hand.

And how many pytest-xdist workers ``-n auto`` (pyproject's addopts) means for the paths given."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
KINDS = ("unit", "e2e")
#: Worker processes for a run with several e2e modules. On the 2-core machines the suite runs on, e2e tests
#: mostly wait on the processes they start, so more workers than cores pay: with four, the whole suite's
#: tests took 3003 s and 3092 s in all but 15-16 min of wall time (a machine with a load of 10-20 besides).
E2E_WORKERS = 4


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C and SIGQUIT reach the commands the tests start. A suite started in the background of a
    non-interactive shell (`cmd &` in a script) inherits SIGINT and SIGQUIT ignored, as would every process it
    starts, and the tests that Ctrl-C a command (`events`, an interrupted `pull` or `build`) would wait for it
    in vain. A handler of our own is not inherited: the commands start with the default action again."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """:data:`E2E_WORKERS` for the whole suite or a directory of e2e tests, at most one per file for files;
    none (in-process) for unit tests alone, which are CPU-bound and take seconds, and for one file.
    ``--dist loadfile`` keeps each module on one worker, so module-scoped fixtures start once."""
    paths = {(config.invocation_params.dir / arg.split("::")[0]).resolve() for arg in config.args}
    if all(p.is_relative_to(TESTS / "unit") for p in paths):
        return 0
    if all(p.is_file() for p in paths):
        return min(E2E_WORKERS, len(paths)) if len(paths) > 1 else 0
    return E2E_WORKERS


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = next((k for k in KINDS if item.path.is_relative_to(TESTS / k)), None)
        if kind is None:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in tests/unit or tests/e2e")
        item.add_marker(kind)
        if "daemon" in getattr(item, "fixturenames", ()):
            item.add_marker("containerd")
