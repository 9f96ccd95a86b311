"""Wheelhouses for the hosts' platforms, built on this controller whatever it runs.

The role's files/wheelhouse.py downloads the locked dependencies for a target's CPython, glibc and
architecture. These tests build the four targets Debian 12 and 13 hosts on x86_64 and Graviton
need, and check each wheel against the tags ``packaging.tags`` gives that interpreter, and that a
changed byte fails the install.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename
from sc2s3 import __version__
from sys_paths import REPO
from sys_releases import build_wheelhouse

# (CPython minor, glibc minor): Debian 12 has CPython 3.11 and glibc 2.36, Debian 13 3.13 and 2.41.
DEBIAN = {12: (11, 36), 13: (13, 41)}
TARGETS = [(release, arch) for release in DEBIAN for arch in ("x86_64", "aarch64")]
BUILD_TIMEOUT_S = 300


def target_name(release: int, arch: str) -> str:
    python, glibc = DEBIAN[release]
    return f"cp3{python}-manylinux_2_{glibc}_{arch}"


def interpreter_tags(release: int, arch: str) -> set[str]:
    """Every tag a CPython of that Debian release on ``arch`` installs (PEP 425 / PEP 600)."""
    python, glibc = DEBIAN[release]
    oldest = 5 if arch == "x86_64" else 17  # the first manylinux of each architecture
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, oldest - 1, -1)]
    legacy = ["manylinux2014", "manylinux2010", "manylinux1"] if arch == "x86_64" else ["manylinux2014"]
    platforms += [f"{name}_{arch}" for name in legacy]
    version = (3, python)
    tags = [*cpython_tags(version, [f"cp3{python}"], platforms), *compatible_tags(version, f"cp3{python}",
                                                                                     platforms)]
    return {str(tag) for tag in tags}


def build(out: Path, target: str, version: str = __version__) -> subprocess.CompletedProcess[str]:
    return build_wheelhouse(REPO / "agent", version, target, out, timeout_s=BUILD_TIMEOUT_S)


@pytest.fixture(scope="module")
def wheelhouses(tmp_path_factory) -> dict[tuple[int, str], Path]:
    out = tmp_path_factory.mktemp("wheelhouses")
    built = {}
    for release, arch in TARGETS:
        proc = build(out, target_name(release, arch))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.splitlines()[-1] == "built"
        tarball = out / f"sc2s3-{__version__}-{target_name(release, arch)}.tar"
        unpacked = out / tarball.stem
        with tarfile.open(tarball) as tar:
            tar.extractall(unpacked, filter="data")
        built[release, arch] = unpacked
    return built


# The first test also pays for the module's four builds (the fixture).
@pytest.mark.timeout(BUILD_TIMEOUT_S * len(TARGETS))
@pytest.mark.parametrize(("release", "arch"), TARGETS)
def test_every_wheel_fits_the_target_interpreter(wheelhouses, release, arch):
    accepted = interpreter_tags(release, arch)
    wheels = sorted(wheelhouses[release, arch].glob("*.whl"))
    misfits = [w.name for w in wheels if not {str(t) for t in parse_wheel_filename(w.name)[3]} & accepted]
    assert not misfits, f"Debian {release} {arch}: {misfits}"
    # The compiled ones are the point: built for the target, not for this controller.
    (core,) = [w for w in wheels if w.name.startswith("pydantic_core-")]
    python = DEBIAN[release][0]
    assert f"-cp3{python}-cp3{python}-" in core.name and core.name.endswith(f"_{arch}.whl"), core.name
    assert any(w.name.startswith(f"sc2s3-{__version__}-py3-none-any") for w in wheels)


@pytest.mark.parametrize(("release", "arch"), TARGETS)
def test_install_list_pins_every_wheel_with_its_hash(wheelhouses, release, arch):
    unpacked = wheelhouses[release, arch]
    hashes = {}
    for line in (unpacked / "install.txt").read_text().splitlines():
        spec, *digests = line.split(" --hash=sha256:")
        hashes[spec.split("==")[0].lower().replace("_", "-")] = {d.strip() for d in digests}
    wheels = sorted(unpacked.glob("*.whl"))
    assert len(wheels) == len(hashes), (sorted(hashes), [w.name for w in wheels])
    for wheel in wheels:
        name = str(parse_wheel_filename(wheel.name)[0])
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() in hashes[name], wheel.name


def test_a_second_build_of_the_same_source_is_cached(wheelhouses, tmp_path):
    out = next(iter(wheelhouses.values())).parent
    proc = build(out, target_name(12, "aarch64"))
    assert (proc.returncode, proc.stdout.strip()) == (0, "cached"), proc.stderr


def test_a_version_without_source_or_cache_is_refused(tmp_path):
    proc = build(tmp_path, target_name(12, "x86_64"), version="0.0.0-missing")
    assert proc.returncode == 3, proc
    assert re.search(r"no wheelhouse for sc2s3 0\.0\.0-missing .*source .* is version", proc.stderr)


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="installs the cp311 wheelhouse here")
def test_a_changed_byte_fails_the_install(wheelhouses, tmp_path):
    """What a host does, on this controller (CPython 3.11 on x86_64, as Debian 12 hosts)."""
    unpacked = tmp_path / "wheelhouse"
    shutil.copytree(wheelhouses[12, "x86_64"], unpacked)
    wheel = next(unpacked.glob("six-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    venv.create(tmp_path / "venv", with_pip=True)
    proc = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "pip"), "install", "--no-index", "--require-hashes",
         "--disable-pip-version-check", "--find-links", str(unpacked), "-r", str(unpacked / "install.txt")],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )
    assert proc.returncode != 0
    assert "DO NOT MATCH THE HASHES" in proc.stderr and "six" in proc.stderr, proc.stderr[-2000:]
