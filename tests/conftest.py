"""Shared test settings: a hypothesis profile sized for 2 cores, seeded generators, and
``--tables`` for the tables some tests can print (a default run prints nothing)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("TAPEGRAD_HYPOTHESIS_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile(
    "long", max_examples=500, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("TAPEGRAD_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def one_thread():
    """The kernels on one thread for the test, the count restored after it: on a shared,
    oversubscribed CPU small calls run many times slower on a team, and the tests that use
    this check numbers, not speed (thread-count invariance is tested with the kernels)."""
    import tapegrad as tg

    old = tg.get_num_threads()
    tg.set_num_threads(1)
    yield
    tg.set_num_threads(old)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tables",
        action="store_true",
        default=False,
        help="print the fuzz example counts and the determinism table (quiet without it)",
    )


@pytest.fixture
def report(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture):
    """``report(*lines)`` prints lines to the terminal under ``--tables``, else nothing."""

    def emit(*lines: str) -> None:
        if request.config.getoption("--tables"):
            with capsys.disabled():
                for line in lines:
                    print(line)

    return emit
