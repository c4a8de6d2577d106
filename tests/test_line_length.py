"""Lines of the library and the commands stay within 120 characters (the width the code is written to)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 120


def long_lines(folders, limit: int = LIMIT) -> list:
    """``path:line (length)`` of every line longer than ``limit`` characters in the ``.py`` files under ``folders``."""
    out = []
    for folder in map(Path, folders):
        for path in sorted(folder.rglob("*.py")):
            for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if len(line) > limit:
                    out.append(f"{path.relative_to(folder.parent).as_posix()}:{k} ({len(line)})")
    return out


def test_library_and_commands_within_120_columns():
    assert long_lines([ROOT / "eghn_md", ROOT / "cli"]) == []


def test_the_check_finds_a_long_line(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n" + "y = '" + "z" * 130 + "'\n")
    assert long_lines([pkg]) == ["pkg/a.py:2 (136)"]  # y = '…': 4 + 130 + 2 quotes
