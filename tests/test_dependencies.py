"""What the bundled notebook imports is installed by a plain `pip install jupyter-torchlab`."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import nbformat
import tomllib

from jupyter_torchlab.tutorial import tutorial_path

ROOT = Path(__file__).resolve().parents[1]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_runtime_dependencies() -> set[str]:
    """Return the distributions `pip install jupyter-torchlab` installs (no extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        _normalise(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]
    }


def imported_modules(source: str) -> set[str]:
    """Return the top-level modules a cell imports (IPython magics and shell lines skipped)."""
    code = "\n".join(
        line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))
    )
    found: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def undeclared(modules: set[str]) -> set[str]:
    """Return the modules that neither the stdlib, our package nor a declared dependency has."""
    declared = declared_runtime_dependencies()
    providers = packages_distributions()
    missing = set()
    for module in modules:
        if module in sys.stdlib_module_names or module == "jupyter_torchlab":
            continue
        dists = {_normalise(d) for d in providers.get(module, [])}
        if not dists & declared:
            missing.add(module)
    return missing


def notebook_imports(path: Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)
    modules: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            modules |= imported_modules(cell.source)
    return modules


def test_every_import_of_the_bundled_notebook_is_a_declared_dependency():
    modules = notebook_imports(tutorial_path())
    assert {"torch", "torchvision", "matplotlib", "numpy"} <= modules  # the check sees them
    assert undeclared(modules) == set(), (
        "the tutorial imports modules that `pip install jupyter-torchlab` does not install: add "
        "them to [project] dependencies in pyproject.toml"
    )


def test_the_check_catches_an_import_nobody_declared():
    cell = (
        "import seaborn as sns\nfrom sklearn.metrics import confusion_matrix\nimport json\n%time x"
    )
    assert imported_modules(cell) == {"seaborn", "sklearn", "json"}
    assert undeclared(imported_modules(cell)) == {"seaborn", "sklearn"}
    # a transitive dependency is not enough: the notebook must not rely on what others pull in
    assert "tornado" in undeclared({"tornado"})
