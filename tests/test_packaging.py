"""Installing like a library: every third-party import is declared in pyproject.toml, no exact pins.

The package's own imports (``speech_tl/``) must be among ``[project] dependencies``; the tests', benchmarks' and
recipes' imports among those or the ``dev`` extra. Imports are read with ``ast`` (function-level ones too) and
mapped to the distributions that provide them with ``importlib.metadata.packages_distributions``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
FIRST_PARTY = {"speech_tl", "tests"}


def dist_name(requirement: str) -> str:
    """``"torch>=2.11,<2.15"`` -> ``"torch"`` (PEP 503-normalised)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level module -> files importing it (absolute imports only; modules beside the file excluded)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                local = (path.parent / f"{top}.py").is_file() or (path.parent / top / "__init__.py").is_file()
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top == "__future__" or local:
                    continue
                found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def undeclared(paths: list[Path], declared: set[str]) -> list[str]:
    providers = packages_distributions()
    problems = []
    for module, files in sorted(imported_modules(paths).items()):
        dists = {dist_name(d) for d in providers.get(module, [])}
        if not dists:
            problems.append(f"{module} (imported by {sorted(files)}) is not installed")
        elif not dists & declared:
            problems.append(f"{module} comes from {sorted(dists)}, not declared (imported by {sorted(files)})")
    return problems


def py_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (REPO / f).rglob("*.py"))


def test_package_imports_are_dependencies():
    declared = {dist_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert undeclared(py_files("speech_tl"), declared) == []


def test_test_and_benchmark_imports_are_declared():
    project = PYPROJECT["project"]
    declared = {dist_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    assert undeclared(py_files("tests", "benchmarks", "recipes"), declared) == []


def test_ranges_not_exact_pins():
    project = PYPROJECT["project"]
    assert project["requires-python"] == ">=3.11"
    for requirement in project["dependencies"]:
        assert "==" not in requirement and "@" not in requirement, requirement
    torch = [r for r in project["dependencies"] if dist_name(r) in ("torch", "torchaudio")]
    assert len(torch) == 2 and all(">=" in r for r in torch)


def test_beam_search_decoder_installs_on_every_supported_python():
    """flashlight-text has wheels up to Python 3.12 only: from 3.13 on, pyproject.toml installs ufal.flashlight-text
    (the same flashlight.lib.text bindings, built for 3.13+) instead, so pip never tries to build it there and
    beam search with the n-gram LM stays available. Exactly one of the two applies on each Python."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    requirements = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    decoders = [r for r in requirements if dist_name(r.name) in ("flashlight-text", "ufal-flashlight-text")]
    wanted = {"3.11": "flashlight-text", "3.12": "flashlight-text", "3.13": "ufal-flashlight-text",
              "3.14": "ufal-flashlight-text"}
    for version, dist in wanted.items():
        env = {**default_environment(), "python_version": version, "python_full_version": f"{version}.0"}
        chosen = [dist_name(r.name) for r in decoders if r.marker is None or r.marker.evaluate(env)]
        assert chosen == [dist], (version, chosen)
