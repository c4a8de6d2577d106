"""Library errors name parameters; the command line translates them to its flags (one table, one handler)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cli._common import PARAM_FLAGS, error_line
from eghn_md.errors import DataError, EghnError, UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_message_speaks_in_parameter_names_and_the_cli_in_flags():
    exc = UsageError("`frame` 3 is too early; use `frame` >= 5 or fewer `steps`", params=("frame", "steps"))
    assert str(exc) == "frame 3 is too early; use frame >= 5 or fewer steps"
    assert error_line(exc) == "--frame 3 is too early; use --frame >= 5 or fewer --steps"
    assert exc.message({"frame": "start"}) == "start 3 is too early; use start >= 5 or fewer steps"
    assert isinstance(exc, ValueError) and exc.exit_code == 2


def test_plain_messages_and_unlisted_backquotes_are_left_alone():
    exc = DataError("run `eghn-md info` on it")
    assert str(exc) == error_line(exc) == "run `eghn-md info` on it"
    assert str(UsageError("`n_clusters` 9", params=("n_clusters",))) == "n_clusters 9"
    assert error_line(UsageError("`n_clusters` 9", params=("n_clusters",))) == "--clusters 9"


def test_the_library_raises_in_parameter_names():
    from eghn_md.export.clusters import parse_frames

    with pytest.raises(UsageError) as info:
        parse_frames(3, "1:4", horizon=1, n_frames=10)
    assert str(info.value) == "pass either frame or frames, not both" and "--" not in str(info.value)
    assert error_line(info.value) == "pass either --frame or --frames, not both"


def test_every_parameter_a_library_error_names_has_a_flag():
    """The params of every ``raise …Error(…, params=(…))`` in eghn_md/ are in the CLI's table."""
    named = set()
    for path in (ROOT / "eghn_md").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "params" and isinstance(kw.value, ast.Tuple):
                        named |= {e.value for e in kw.value.elts if isinstance(e, ast.Constant)}
    assert named and named <= set(PARAM_FLAGS), sorted(named - set(PARAM_FLAGS))
    assert all(flag.startswith("--") for flag in PARAM_FLAGS.values())


def test_no_library_error_message_names_a_flag():
    """String constants inside ``raise`` statements of eghn_md/ do not contain ``--flag``."""
    import re

    bad = []
    for path in (ROOT / "eghn_md").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and re.search(
                            r"(^|\s)--[a-z]", sub.value):
                        bad.append(f"{path.relative_to(ROOT)}:{sub.lineno}: {sub.value!r}")
    assert not bad, bad


def test_base_class_keeps_a_plain_message():
    assert str(EghnError("x")) == "x" and EghnError("x").params == ()
