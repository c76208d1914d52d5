"""Every code block of the README runs as written: the Python blocks verbatim, in a fresh process,
and every `ella-v` subcommand the shell blocks name exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_readme_has_its_two_commands():
    shell = blocks("bash")
    assert any("pip install" in b and "ella-v synthesize" in b for b in shell), "the set-up + main job command"
    assert any(b.strip() == "python3 -m pytest -q tests" for b in shell), "the test command"


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run_verbatim(index, tmp_path):
    code = blocks("python")[index]
    if "flite" in code and shutil.which("flite") is None:
        pytest.skip("this block uses flite, which the README's set-up installs")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={"OMP_NUM_THREADS": "1", "PATH": __import__("os").environ["PATH"], "HOME": str(tmp_path)})
    assert result.returncode == 0, f"README python block {index} failed:\n{code}\n{result.stderr[-3000:]}"


def test_shell_blocks_name_existing_subcommands():
    names = sorted({m for b in blocks("bash") for m in re.findall(r"\bella-v ([a-z][a-z-]+)", b)})
    assert names, "the README shows ella-v commands"
    for name in names:
        result = subprocess.run([sys.executable, "-m", "ella_v_hf.cli", name, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"`ella-v {name}` from the README does not exist: {result.stderr[-500:]}"
