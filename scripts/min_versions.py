"""The pins of the minimum-versions job (scripts/test-min-versions.sh), held to pyproject.toml.

    python scripts/min_versions.py check       fail unless every runtime dependency that
                                               pyproject.toml declares is pinned in
                                               scripts/min-versions.txt at its declared floor
                                               (or is a listed exception, with its reason)
    python scripts/min_versions.py test-tools  print the test tools the job installs, with the
                                               specifiers of pyproject's `test` extra

So a floor raised in pyproject.toml without the job following (or the other way round) fails the
job instead of testing versions nobody declared.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "scripts" / "min-versions.txt"

# Declared dependencies that the job installs above their floor, and why.
NOT_AT_FLOOR = {
    "torch": "its floor (2.4) is a multi-GB CUDA download; the server and the page never import "
    "it, so the job installs the release CI has on local disk",
    "torchvision": "goes with torch (same reason)",
}

# What the job needs from the `test` extra: the server tests and the browser tests, nothing else
# (no linters, no type checker: those run in the main environment).
TEST_TOOLS = ("pytest", "pytest-jupyter", "pytest-timeout", "prometheus-client", "playwright")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _pins() -> dict[str, Version]:
    pins = {}
    for raw in PINS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match is None:
            raise SystemExit(f"{PINS.name}: not a `name==version` pin: {raw!r}")
        pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def _floor(requirement: Requirement) -> Version | None:
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "~=", "==")]
    return max(floors) if floors else None


def check() -> list[str]:
    """Return what is wrong with the pins (nothing when they are the declared floors)."""
    pins = _pins()
    problems = []
    for dep in _project()["dependencies"]:
        requirement = Requirement(dep)
        name = canonicalize_name(requirement.name)
        pin = pins.get(name)
        floor = _floor(requirement)
        if pin is None:
            problems.append(f"{name}: declared `{dep}` but not pinned in {PINS.name}")
            continue
        if not requirement.specifier.contains(pin, prereleases=True):
            problems.append(f"{name}: pinned {pin}, which `{dep}` does not allow")
        elif name in NOT_AT_FLOOR:
            continue
        elif floor is None:
            problems.append(f"{name}: `{dep}` declares no floor to test")
        elif pin.release[: len(floor.release)] != floor.release:
            # `>=6.20` is tested with the first 6.20.x release there is (6.20.1), not with 6.21
            problems.append(f"{name}: pinned {pin}, but the declared floor is {floor}")
    return problems


def test_tools() -> list[str]:
    """Return the test tools' requirements as pyproject's `test` extra specifies them."""
    wanted = {canonicalize_name(t) for t in TEST_TOOLS}
    found = [
        dep
        for dep in _project()["optional-dependencies"]["test"]
        if canonicalize_name(Requirement(dep).name) in wanted
    ]
    missing = wanted - {canonicalize_name(Requirement(d).name) for d in found}
    if missing:
        raise SystemExit(f"not in pyproject's test extra: {sorted(missing)}")
    return found


def main(argv: list[str]) -> int:
    """Run the command named in argv."""
    if argv == ["check"]:
        problems = check()
        for problem in problems:
            print(f"min versions: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if argv == ["test-tools"]:
        print("\n".join(test_tools()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
