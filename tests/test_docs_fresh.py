"""Generated files (completion scripts, docs/CLI.md) must match the app: regenerate when stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_completions_and_cli_reference_are_fresh() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr


def test_completion_scripts_call_the_completion_variable() -> None:
    for name in ("gradts.bash", "_gradts", "gradts.fish"):
        text = (ROOT / "completions" / name).read_text()
        assert "_GRADTS_COMPLETE" in text, name
