"""pytest configuration for the pytest-benchmark suite (benchmarks/test_bench.py).

The project's pytest config lists ``testpaths = ["tests", "benchmarks"]``, so
this directory is visited on every plain ``pytest`` run.  Benchmarks must not
run there: everything in this directory is ignored unless pytest was started
with ``--benchmark-only`` (an option that exists only when pytest-benchmark is
installed), e.g.::

    python -m pytest benchmarks --benchmark-only
    python -m pytest --benchmark-only            # with the project config
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

_HERE = Path(__file__).resolve().parent

# `from benchmarks.workloads import ...` must work whatever pytest's rootdir /
# import mode is.
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))


def _benchmarks_enabled(config: pytest.Config) -> bool:
    try:
        return bool(config.getoption("benchmark_only"))
    except ValueError:  # pytest-benchmark not installed
        return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> Optional[bool]:
    if _benchmarks_enabled(config):
        return None
    try:
        collection_path.resolve().relative_to(_HERE)
    except ValueError:
        return None
    if collection_path.resolve() == _HERE:
        return None
    return True


#: the loops, then the Python floor (benchmarks/floor.py) for the loop-level
#: workloads
LOOP_PARAMS = ("asyncio", "uvloop", "py_async_lib", "floor")


@pytest.fixture(params=LOOP_PARAMS)
def loop_name(request: pytest.FixtureRequest) -> str:
    from benchmarks.loops import LoopUnavailable, get_loop_factory

    try:
        get_loop_factory(request.param)
    except LoopUnavailable as exc:
        pytest.skip(str(exc))
    return request.param


class FreshLoops:
    """Hands out a new event loop per benchmark round and closes the previous
    one (and any left at the end), so no loop state carries over between
    rounds and loop creation/closing stays out of the timed region."""

    def __init__(self, name: str) -> None:
        from benchmarks.loops import get_loop_factory

        self.name = name
        self.factory = get_loop_factory(name)
        self.loops: List[object] = []
        self.on_close: List = []

    def new(self):
        self.close_all()
        loop = self.factory()
        self.loops.append(loop)
        return loop

    def close_all(self) -> None:
        while self.on_close:
            self.on_close.pop()()
        while self.loops:
            loop = self.loops.pop()
            if not loop.is_closed():
                loop.close()


@pytest.fixture
def fresh_loops(loop_name: str) -> Iterator[FreshLoops]:
    loops = FreshLoops(loop_name)
    try:
        yield loops
    finally:
        loops.close_all()
