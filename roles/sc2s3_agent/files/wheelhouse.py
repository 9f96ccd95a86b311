"""Build the wheelhouse of one agent release for one host platform, on the controller.

    python wheelhouse.py --source AGENT_DIR --version 0.5.0 \\
        --target cp311-manylinux_2_36_x86_64 --out build/wheelhouse

Writes ``OUT/sc2s3-<version>-<target>.tar``: the binary wheels of every package in
``AGENT_DIR/requirements.lock`` that the target needs (downloaded for the *target's* CPython,
glibc and architecture, whatever the controller runs), the agent's own pure wheel, and
``install.txt``: the lock's pins with their hashes plus the agent wheel's hash. A host installs
with ``pip install --no-index --require-hashes -r install.txt``, so a wheel changed after the
lock was made fails the install.

The tarball is cached next to ``<tarball>.source-sha256``, a digest of the agent source and its
lock: when the source has the version asked for, a changed digest rebuilds it (a fresh host never
gets stale code); otherwise the cached tarball is the only source of that version.

Prints ``built`` or ``cached`` on the last line. Exit codes: 0 done, 2 usage, 3 no wheelhouse of
that version exists and the source is another version, 4 pip failed (its output above).
Needs only the controller's Python (3.10 or later; Ansible may need newer), pip, ``packaging``
(a dependency of ansible-core) and HTTPS access to the package index.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

TARGET = re.compile(r"^cp3(?P<minor>\d+)-manylinux_2_(?P<glibc>\d+)_(?P<arch>x86_64|aarch64)$")
VERSION_LINE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
# manylinux aliases older than PEP 600, by the glibc minor version they stand for.
LEGACY_MANYLINUX = {"x86_64": {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"},
                    "aarch64": {17: "manylinux2014"}}
# The oldest glibc each architecture has manylinux wheels for.
OLDEST_GLIBC = {"x86_64": 5, "aarch64": 17}


class BuildError(Exception):
    """The wheelhouse cannot be built; ``exit_code`` says why (see the module docstring)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def target_environment(target: str) -> tuple[str, list[str], dict[str, str]]:
    """``cp311-manylinux_2_36_x86_64`` -> ("3.11", platform tags, PEP 508 marker environment).

    The platform tags are every manylinux tag a host with that glibc accepts, newest first.
    :raises BuildError: (exit 2) for a target not of that form.
    """
    match = TARGET.match(target)
    if match is None:
        raise BuildError(f"target {target!r} is not cp3X-manylinux_2_Y_<x86_64|aarch64>", 2)
    python = f"3.{match['minor']}"
    glibc, arch = int(match["glibc"]), match["arch"]
    if glibc < OLDEST_GLIBC[arch]:
        # pip given no --platform would download the controller's wheels instead.
        raise BuildError(f"target {target!r}: no manylinux wheels exist for glibc 2.{glibc}", 2)
    platforms = []
    for minor in range(glibc, OLDEST_GLIBC[arch] - 1, -1):
        platforms.append(f"manylinux_2_{minor}_{arch}")
        if minor in LEGACY_MANYLINUX[arch]:
            platforms.append(f"{LEGACY_MANYLINUX[arch][minor]}_{arch}")
    environment = {
        "python_version": python, "python_full_version": f"{python}.0",
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
        "platform_machine": arch, "platform_release": "", "platform_version": "",
        "implementation_version": f"{python}.0", "extra": "",
    }
    return python, platforms, environment


def lock_for_target(lock: Path, environment: dict[str, str]) -> list[str]:
    """The lock's entries (``name==version --hash=sha256:…``) whose markers hold on the target.

    pip evaluates markers against the interpreter it runs on, not the ``--platform`` it downloads
    for, so a universal lock is narrowed here first.
    """
    lines = []
    for entry in lock.read_text().replace("\\\n", " ").splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        spec, _, hashes = entry.partition(" --hash=")
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        requirement.marker = None
        lines.append(f"{requirement} --hash={hashes.strip()}")
    return lines


def source_digest(source: Path) -> str:
    """SHA-256 over the agent's pyproject.toml, lock and source files (paths and contents), and
    this builder itself: a fixed builder rebuilds what the old one made."""
    files = sorted(
        p for p in [source / "pyproject.toml", source / "requirements.lock", *source.glob("src/**/*")]
        if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
    )
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in files:
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                          check=False)
    if proc.returncode != 0:
        raise BuildError(f"pip {args[0]} failed (exit {proc.returncode})", 4)


def build(source: Path, version: str, target: str, out: Path) -> str:
    """Build (or find cached) ``out/sc2s3-<version>-<target>.tar``; returns "built" or "cached".

    :raises BuildError: see the module docstring for the exit codes.
    """
    python, platforms, environment = target_environment(target)
    tarball = out / f"sc2s3-{version}-{target}.tar"
    digest_file = tarball.with_name(tarball.name + ".source-sha256")
    init = source / "src" / "sc2s3" / "__init__.py"
    found = VERSION_LINE.search(init.read_text()) if init.is_file() else None
    source_version = found.group(1) if found else "unknown"
    if source_version != version:
        if tarball.is_file():
            return "cached"
        raise BuildError(
            f"no wheelhouse for sc2s3 {version} ({target}) at {tarball}, and the agent source in "
            f"{source} is version {source_version}: check out the matching source, or leave "
            f"sc2s3_version empty to deploy the source's version", 3)
    if not (source / "requirements.lock").is_file():
        raise BuildError(f"the agent source in {source} has no requirements.lock (agent 0.4 or "
                         f"older): deploy 0.5.0 or later, or a cached wheelhouse", 3)
    digest = source_digest(source)
    if tarball.is_file() and digest_file.is_file() and digest_file.read_text().strip() == digest:
        return "cached"

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{tarball.name}.", dir=out) as work:
        wheels = Path(work) / "wheels"
        requirements = Path(work) / "requirements.txt"
        requirements.write_text("\n".join(lock_for_target(source / "requirements.lock", environment)) + "\n")
        pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--implementation", "cp", "--python-version", python,
            "--abi", f"cp3{python.split('.')[1]}", "--abi", "abi3", "--abi", "none",
            *(arg for platform in platforms for arg in ("--platform", platform)),
            "--dest", str(wheels), "-r", str(requirements))
        # Built from a copy: setuptools leaves build/ and *.egg-info in the tree it builds, and
        # files deleted from src/ would linger in build/lib and ship again.
        tree = Path(work) / "source"
        shutil.copytree(source, tree, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", "tests", ".*"))
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(tree))
        # The wheel's name carries the normalized version (0.5.0-rc1 -> 0.5.0rc1).
        agent_wheels = [w for w in wheels.glob("sc2s3-*.whl") if parse_wheel_filename(w.name)[0] == "sc2s3"]
        if len(agent_wheels) != 1:
            raise BuildError(f"expected one sc2s3 {version} wheel, pip built {agent_wheels}", 4)
        agent_hash = hashlib.sha256(agent_wheels[0].read_bytes()).hexdigest()
        (wheels / "install.txt").write_text(
            requirements.read_text() + f"sc2s3=={version} --hash=sha256:{agent_hash}\n")
        partial = Path(work) / "wheelhouse.tar"
        with tarfile.open(partial, "w") as tar:
            for path in sorted(wheels.iterdir()):
                tar.add(path, arcname=path.name)
        # Renamed into place, then the digest: an interrupted build is never taken as cached.
        digest_file.unlink(missing_ok=True)
        partial.replace(tarball)
    digest_file.write_text(digest + "\n")
    return "built"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="agent source (pyproject.toml)")
    parser.add_argument("--version", required=True, help="release version")
    parser.add_argument("--target", required=True, help="cp3X-manylinux_2_Y_<arch>")
    parser.add_argument("--out", type=Path, required=True, help="wheelhouse directory")
    args = parser.parse_args(argv)
    try:
        print(build(args.source.resolve(), args.version, args.target, args.out.resolve()))
    except BuildError as error:
        print(f"wheelhouse: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
