"""requirements.lock pins what the project needs, and the environment under test is the locked one."""

from __future__ import annotations

import re
from importlib import metadata

import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?: ; (?P<marker>[^\\]+?))?\s*\\$")


def locked() -> dict[str, tuple[str, str | None, int]]:
    """name -> (version, marker, number of hashes) for every entry of requirements.lock."""
    entries: dict[str, tuple[str, str | None, int]] = {}
    current = None
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = ENTRY.match(line)
        if match:
            current = canonicalize_name(match["name"])
            entries[current] = (match["version"], match["marker"], 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, marker, hashes = entries[current]
            entries[current] = (version, marker, hashes + 1)
    return entries


def test_every_declared_dependency_is_pinned_with_hashes():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    entries = locked()
    assert len(entries) > 50
    missing = [str(r) for r in declared if canonicalize_name(r.name) not in entries]
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"
    unhashed = [name for name, (_, _, hashes) in entries.items() if hashes == 0]
    assert not unhashed, f"locked without a hash: {unhashed}"
    outside = [str(r) for r in declared if entries[canonicalize_name(r.name)][0] not in r.specifier]
    assert not outside, f"locked versions outside pyproject.toml's ranges (run `make lock`): {outside}"


def test_the_environment_under_test_is_the_locked_one():
    applicable = {
        name: version for name, (version, marker, _) in locked().items() if marker is None or Marker(marker).evaluate()
    }
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    # A local build tag ("2.14.1+cu130") is the same release as the locked "2.14.1".
    differing = {
        name: (version, installed.get(name))
        for name, version in applicable.items()
        if installed.get(name, "").split("+")[0] != version
    }
    assert not differing, f"installed versions differ from requirements.lock (locked, installed): {differing}"
