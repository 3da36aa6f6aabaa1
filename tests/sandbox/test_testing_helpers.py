"""``load_module``: test helper files loaded by path, once per name."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_meetings.sandbox.testing import load_module


@pytest.fixture
def forget() -> Iterator[list[str]]:
    """Names to drop from ``sys.modules`` after the test."""
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_file_is_loaded_and_registered_before_it_runs(tmp_path: Path, forget: list[str]) -> None:
    path = _write(
        tmp_path / "helper.py",
        "import dataclasses, sys\n"
        "REGISTERED = __name__ in sys.modules\n"
        "@dataclasses.dataclass\n"
        "class Point:\n"
        "    x: int\n",
    )
    forget.append("helper_under_test")
    module = load_module(path, "helper_under_test")
    assert module.REGISTERED
    assert module.Point(1).x == 1
    assert sys.modules["helper_under_test"] is module


def test_the_same_name_returns_the_same_module_without_running_it_again(
    tmp_path: Path, forget: list[str]
) -> None:
    log = tmp_path / "runs.log"
    path = _write(
        tmp_path / "counted.py", f"with open({str(log)!r}, 'a') as out:\n    out.write('ran\\n')\n"
    )
    forget.append("counted_under_test")
    first = load_module(path, "counted_under_test")
    second = load_module(path, "counted_under_test")
    assert second is first
    assert log.read_text() == "ran\n"


def test_a_name_taken_by_another_file_is_refused(tmp_path: Path, forget: list[str]) -> None:
    forget.append("taken_under_test")
    load_module(_write(tmp_path / "a.py", "A = 1\n"), "taken_under_test")
    with pytest.raises(ImportError, match="already loaded"):
        load_module(_write(tmp_path / "b.py", "B = 1\n"), "taken_under_test")


def test_a_file_that_fails_to_run_is_not_left_loaded(tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.py", "raise RuntimeError('boom')\n")
    with pytest.raises(RuntimeError, match="boom"):
        load_module(path, "broken_under_test")
    assert "broken_under_test" not in sys.modules


def test_default_names_follow_the_path_below_tests(tmp_path: Path, forget: list[str]) -> None:
    one = _write(tmp_path / "tests" / "alpha" / "world.py", "WHERE = 'alpha'\n")
    two = _write(tmp_path / "tests" / "beta" / "world.py", "WHERE = 'beta'\n")
    forget.extend(["tests_alpha_world", "tests_beta_world"])
    first, second = load_module(one), load_module(two)
    assert (first.__name__, second.__name__) == ("tests_alpha_world", "tests_beta_world")
    assert (first.WHERE, second.WHERE) == ("alpha", "beta")
    assert load_module(one) is first


def test_default_names_outside_tests_are_stable_and_unique(
    tmp_path: Path, forget: list[str]
) -> None:
    one = _write(tmp_path / "a" / "helper.py", "WHERE = 'a'\n")
    two = _write(tmp_path / "b" / "helper.py", "WHERE = 'b'\n")
    first, second = load_module(one), load_module(two)
    forget.extend([first.__name__, second.__name__])
    assert first.__name__ != second.__name__
    assert first.__name__.startswith("helper_")
    assert load_module(one) is first
    assert (first.WHERE, second.WHERE) == ("a", "b")


def test_the_repository_helpers_get_readable_default_names() -> None:
    world = Path(__file__).parent.parent / "sync" / "test_jobs_world.py"
    assert load_module(world).__name__ == "tests_sync_test_jobs_world"
