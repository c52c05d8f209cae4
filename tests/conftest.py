from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import APIServerProcess, oldest_and_newest_kubectl  # noqa: E402

KUBECTLS = oldest_and_newest_kubectl()


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    """One API server per test module (each test uses its own names or namespace)."""
    srv = APIServerProcess(tmp_path_factory.mktemp("apiserver") / "data", extra_args=["--bookmark-interval", "1"])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(params=KUBECTLS or [None], ids=lambda p: Path(p).name if p else "no-kubectl")
def kubectl(request):
    if request.param is None:
        pytest.skip("no kubectl on this machine")
    return request.param
