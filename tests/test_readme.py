"""README's Python examples run as written; its first commands are the ones CI uses."""

from __future__ import annotations

import re
import runpy
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = BLOCKS[index]
    if "create_api(app" in block and "asyncio.run" not in block:
        block = "from rkit import App\napp = App()\n" + block.replace('"…"', '"t"')
    monkeypatch.delenv("RKIT_REDIS_URL", raising=False)
    script = tmp_path / f"example_{index}.py"
    script.write_text(block)
    runpy.run_path(str(script), run_name="__main__")


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
    assert commands[0] == "pip install -e '.[dev]' && rkit dev"
    assert commands[1] == "pip install -e '.[test]' && pytest"
    ci = (README.parent / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "apt-get install -y redis-server" in ci
    out = subprocess.run(
        ["awk", "/<!-- test-command -->/{getline; getline; print; exit}", str(README)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == commands[1]


@pytest.mark.slow
def test_readme_examples_pass_mypy_strict(tmp_path: Path) -> None:
    """Every Python block of the README type-checks under ``mypy --strict`` against
    the package as installed (the layout of the wheel: api/ and workers/ inside rkit)."""
    import shutil
    import sys

    root = README.parent
    src = tmp_path / "src"
    shutil.copytree(
        root / "rkit", src / "rkit", ignore=shutil.ignore_patterns("api", "workers", "_lua")
    )
    shutil.copytree(root / "api", src / "rkit" / "api")
    shutil.copytree(root / "workers", src / "rkit" / "workers")
    examples = tmp_path / "examples"
    examples.mkdir()
    for i, block in enumerate(BLOCKS):
        if "create_api(app" in block and "asyncio.run" not in block:
            block = "from rkit import App\napp = App()\n" + block
        (examples / f"example_{i}.py").write_text(block)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(examples)],
        env={"MYPYPATH": str(src), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
