"""The layers hold: core <- execution <- components <- integrations <- surfaces, with
no import running up (import-linter contracts in pyproject.toml, run here so CI
fails on a back-import) and no import cycle among rkit's modules (checked on the
import graph with grimp)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = [
    sys.executable,
    "-c",
    "from importlinter.cli import lint_imports_command; lint_imports_command()",
]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [*LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_layer_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("rkit/registry.py", "from rkit import retrier"),  # core -> component
        ("rkit/workpool/types.py", "import rkit.presence"),  # execution -> component
        ("rkit/rate_limit.py", "from rkit import action_cache"),  # component -> component
        ("rkit/presence.py", "import rkit.testing"),  # component -> surface
        ("rkit/codec.py", "import fastapi"),  # core -> FastAPI
    ],
)
def test_a_back_import_breaks_a_contract(tmp_path: Path, module: str, line: str) -> None:
    """The same contracts over a copy of the tree with one import that runs up."""
    for part in ("rkit", "api", "workers", "lua"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    text = target.read_text()
    head, sep, rest = text.partition("\nfrom __future__ import annotations\n")
    target.write_text(head + sep + line + "  # noqa\n" + rest)
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout


def test_no_import_cycles() -> None:
    """For every direct import a -> b between rkit's modules, no chain b -> ... -> a."""
    sys.path.insert(0, str(ROOT))
    try:
        graph = grimp.build_graph("rkit", "api", "workers", exclude_type_checking_imports=True)
    finally:
        sys.path.remove(str(ROOT))
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            chain = graph.find_shortest_chain(importer=imported, imported=importer)
            # a package importing its own submodules (re-exports) is not a cycle
            if (
                chain
                and not importer.startswith(imported + ".")
                and not imported.startswith(importer + ".")
            ):
                cycles.append(chain)
    assert cycles == []


# api/ and workers/ ship as rkit.api and rkit.workers (setuptools package-dir), names
# the import graph of the repo cannot see: below the surfaces nothing may use them
_SURFACES = {"cli.py", "testing.py", "pytest.py", "example.py"}
_UPWARD = re.compile(r"^\s*(from|import)\s+(rkit\.(api|workers)|\.+(api|workers))\b", re.M)


def test_no_module_below_the_surfaces_imports_api_or_workers() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "rkit").rglob("*.py")
        if path.name not in _SURFACES and _UPWARD.search(path.read_text())
    ]
    assert offenders == []


def test_no_bench_script_shadows_a_module_it_may_import() -> None:
    """``python bench/x.py`` puts bench/ first on sys.path: a bench named like a
    standard-library module or a dependency breaks every import of that name (a
    bench/operator.py once broke ``import re`` for all benches)."""
    import sys

    root = Path(__file__).resolve().parent.parent
    deps = {"redis", "arq", "fastapi", "starlette", "pydantic", "httpx", "uvicorn", "stripe"}
    deps |= {"workos", "svix", "croniter", "prometheus_client", "fakeredis", "limits"}
    for script in (root / "bench").glob("*.py"):
        assert script.stem not in sys.stdlib_module_names, script
        assert script.stem not in deps, script
