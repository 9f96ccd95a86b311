"""The lock files agree with what they lock: `make lock` after editing a requirement.

agent/requirements.lock pins the agent's whole dependency tree with hashes (the release build
and the hosts install from it); requirements-dev.lock pins the controller's tools and must give
the tests the same versions the hosts get.
"""

import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

AGENT = Path(__file__).resolve().parents[1]
REPO = AGENT.parent
FIX = "run `make lock` and commit the lock files"
# Marker environments of the hosts the agent supports: CPython 3.11 (requires-python) and later on
# Linux, x86_64 or aarch64.
TARGETS = [
    {**default_environment(), "python_version": f"3.{minor}", "python_full_version": f"3.{minor}.0",
     "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
     "platform_machine": machine, "extra": ""}
    for minor in (11, 12, 13, 14) for machine in ("x86_64", "aarch64")
]


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """Parse a hashed requirements lock: {canonical name: (version, [sha256 hashes])}.

    Raises AssertionError on an entry without an exact pin or without a hash.
    """
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in path.read_text().replace("\\\n", " ").splitlines():
        line = block.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --hash=")
        requirement = Requirement(spec)
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        assert len(pins) == 1, f"{path.name}: {spec!r} is not pinned with ==; {FIX}"
        assert options, f"{path.name}: {requirement.name} has no --hash; {FIX}"
        assert all(o.startswith("sha256:") for o in options), f"{path.name}: {requirement.name}"
        name = canonicalize_name(requirement.name)
        # A universal lock may pin a package twice under exclusive markers; keep the first.
        entries.setdefault(name, (pins[0], [o.strip() for o in options]))
    return entries


def pinned_dependencies() -> dict[str, str]:
    project = tomllib.loads((AGENT / "pyproject.toml").read_text())["project"]
    pins = {}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        exact = [s.version for s in requirement.specifier if s.operator == "=="]
        assert len(exact) == 1, f"agent/pyproject.toml: pin {text!r} with == (the lock is built from it)"
        pins[canonicalize_name(requirement.name)] = exact[0]
    return pins


@pytest.fixture(scope="module")
def agent_lock():
    return read_lock(AGENT / "requirements.lock")


def test_every_dependency_of_pyproject_is_locked_at_its_pin(agent_lock):
    pins = pinned_dependencies()
    disagree = {
        name: (version, agent_lock.get(name, ("missing", []))[0])
        for name, version in pins.items()
        if agent_lock.get(name, ("missing", []))[0] != version
    }
    assert not disagree, f"pyproject pin vs agent/requirements.lock: {disagree}; {FIX}"


def test_the_agent_lock_holds_the_whole_tree_and_nothing_else(agent_lock):
    """Every locked package is pyproject's or required by a locked one (read from the installed
    metadata of the project venv, which `make venv` builds from these locks)."""
    from importlib.metadata import PackageNotFoundError, distribution

    needed: set[str] = set()
    todo = list(pinned_dependencies())
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            pytest.fail(f"{name} is locked but not installed in the venv; run `make venv`")
        for text in requires:
            requirement = Requirement(text)
            # The lock is universal: a requirement of any target host counts.
            if requirement.marker is None or any(requirement.marker.evaluate(e) for e in TARGETS):
                todo.append(canonicalize_name(requirement.name))
    assert needed == set(agent_lock), (
        f"missing from the lock: {sorted(needed - set(agent_lock))}, "
        f"locked but unused: {sorted(set(agent_lock) - needed)}; {FIX}"
    )


def test_the_controller_lock_runs_the_versions_hosts_get(agent_lock):
    dev_lock = read_lock(REPO / "requirements-dev.lock")
    differ = {
        name: (version, dev_lock[name][0])
        for name, (version, _) in agent_lock.items()
        if name in dev_lock and dev_lock[name][0] != version
    }
    assert not differ, f"agent lock vs requirements-dev.lock: {differ}; {FIX}"
    assert set(pinned_dependencies()) <= set(dev_lock), f"requirements-dev.lock lacks agent deps; {FIX}"


def test_a_lock_entry_without_a_hash_is_refused(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("urllib3==2.8.0\n")
    with pytest.raises(AssertionError, match="no --hash"):
        read_lock(lock)
