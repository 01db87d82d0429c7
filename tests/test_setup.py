"""The project's set-up files say what the README promises."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_public_api_imports() -> None:
    import memlab

    for name in memlab.__all__:
        assert getattr(memlab, name) is not None


def test_every_dependency_has_a_lower_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [
        d for group in project["optional-dependencies"].values() for d in group
    ]
    unpinned = [d for d in deps if ">=" not in d]
    assert not unpinned, f"dependencies without a lower bound: {unpinned}"
    names = {re.split(r"[\[<>=]", d)[0].lower() for d in deps}
    for needed in (
        "jupyterlab",
        "pandas",
        "vectorbt",
        "ccxt",
        "ipywidgets",
        "plotly",
        "papermill",
        "pytest",
    ):
        assert needed in names


def test_environment_yml_installs_the_project_from_pyproject() -> None:
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- python>=3\.11", text, re.M)
    assert re.search(r"^\s*- -e \.\[dev\]", text, re.M), (
        "the pip section must install the project itself"
    )


def test_ci_runs_make_test() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
