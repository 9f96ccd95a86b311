"""Build and cache the test-host images: one per Debian release, from a debootstrap rootfs.

A tag is `localhost/sc2s3-testhost:debian<N>-<hash>`; the hash covers every input of the
recipe (this module, the files it copies from inventory/sandbox/image, the package list, the
apt mirror and settings), so a changed recipe builds a new image and an unchanged one is never rebuilt.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .paths import IMAGE_DIR
from .podman import ensure_host_tools, podman
from .releases import RELEASES, Release
from .shell import log, run

IMAGE_NAME = "localhost/sc2s3-testhost"
# What a deploy needs on a host: python3 and venv for the agent's release, sudo for become,
# sshd under supervisor, CA certificates for HTTPS, ip/ps/curl for the tests' probes.
IMAGE_PACKAGES = "openssh-server,python3,python3-venv,sudo,iproute2,procps,ca-certificates,supervisor,curl"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The files of inventory/sandbox/image that go into the rootfs (its README does not).
RECIPE_FILES = ("sshd.conf", "testhost-init")
APT_CONF_D = Path("/etc/apt/apt.conf.d")


# -- the controller's apt setup, which the images reuse ------------------------------------------


def controller_suite() -> str:
    """The controller's Debian codename (its apt sources name this suite)."""
    os_release = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=\"?(\w+)", os_release, re.MULTILINE)
    return found.group(1) if found else "bookworm"


def apt_source_files() -> list[Path]:
    """The controller's active apt sources (disabled ones have other suffixes)."""
    sources = [Path("/etc/apt/sources.list")]
    sources_d = Path("/etc/apt/sources.list.d")
    if sources_d.is_dir():
        sources += sorted(sources_d.glob("*.list")) + sorted(sources_d.glob("*.sources"))
    return [p for p in sources if p.is_file()]


def apt_mirror() -> str:
    """The controller's Debian mirror (deb822 or one-line format); every release uses it."""
    suite = controller_suite()
    for path in apt_source_files():
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and suite in suites.group(1).split():
                return uris.group(1)
        line = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{suite}\s", text, re.MULTILINE)
        if line:
            return line.group(1)
    return DEFAULT_MIRROR


def apt_sources_for(release: Release) -> dict[Path, str]:
    """The controller's apt sources (absolute path -> text), renamed to the release's suite:
    on a bookworm controller a trixie host gets trixie, trixie-updates and trixie-security
    from the same mirrors."""
    suite = controller_suite()
    return {path: re.sub(rf"\b{suite}\b", release.suite, path.read_text()) for path in apt_source_files()}


def apt_settings() -> list[Path]:
    """The controller's apt.conf.d files (proxy, validity and index settings)."""
    return sorted(p for p in APT_CONF_D.glob("*") if p.is_file()) if APT_CONF_D.is_dir() else []


# -- tags and the cache --------------------------------------------------------------------------


def image_tag(release: Release) -> str:
    """`localhost/sc2s3-testhost:debian<N>-<hash>` for this recipe and release."""
    digest = hashlib.sha256()
    digest.update(f"{release.suite}|minbase|{IMAGE_PACKAGES}|{apt_mirror()}".encode())
    digest.update(Path(__file__).read_bytes())  # the recipe's steps are this module
    for name in RECIPE_FILES:
        digest.update(name.encode() + b"\0" + (IMAGE_DIR / name).read_bytes())
    for path, text in apt_sources_for(release).items():
        digest.update(str(path).encode() + b"\0" + text.encode())
    for path in apt_settings():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{IMAGE_NAME}:debian{release.number}-{digest.hexdigest()[:12]}"


def ensure_images(numbers: list[int]) -> dict[int, str]:
    """Build the image of each release in `numbers` unless its tag exists; release -> tag."""
    ensure_host_tools()
    return {number: ensure_image(RELEASES[number]) for number in dict.fromkeys(numbers)}


def ensure_image(release: Release) -> str:
    """Build one release's image unless this recipe's tag exists; returns the tag."""
    tag = image_tag(release)
    if podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    started = time.monotonic()
    log(f"building {tag} (Debian {release.number} {release.suite}, debootstrap, one to two minutes)")
    rootfs = Path(tempfile.mkdtemp(prefix="sc2s3-rootfs-", dir="/var/tmp"))
    try:
        bootstrap_rootfs(rootfs, release)
        configure_rootfs(rootfs, release)
        import_rootfs(rootfs, tag)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    remove_older_images(tag, release)
    return tag


def tag_release(tag: str) -> int:
    """The release an image tag was built for; tags from before `debian<N>-` were bookworm."""
    found = re.search(r":debian(\d+)-", tag)
    return int(found.group(1)) if found else 12


def remove_older_images(keep: str, release: Release) -> None:
    """Drop the release's earlier images (~250 MB each); one still used by a container stays.
    The other releases' images are left alone."""
    tags = podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME).stdout.split()
    for tag in tags:
        if tag != keep and tag_release(tag) == release.number:
            podman("rmi", tag, check=False)


# -- the recipe's steps --------------------------------------------------------------------------


def bootstrap_rootfs(rootfs: Path, release: Release) -> None:
    """A minbase rootfs of the release from the controller's mirror (debootstrap's script for
    every Debian suite is the same `sid` one, so a bookworm controller bootstraps trixie)."""
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={IMAGE_PACKAGES}",
            release.suite,
            str(rootfs),
            apt_mirror(),
        ]
    )


def configure_rootfs(rootfs: Path, release: Release) -> None:
    """apt settings from the controller, no SSH keys, supervisord in the foreground."""
    # The controller's sources replace debootstrap's (both at once make apt warn twice per line).
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    for source, text in apt_sources_for(release).items():
        target = rootfs / source.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for setting in apt_settings():
        shutil.copy2(setting, rootfs / "etc/apt/apt.conf.d" / setting.name)
    for host_key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        host_key.unlink()
    supervisord_conf = rootfs / "etc/supervisor/supervisord.conf"
    text = supervisord_conf.read_text()
    if "[supervisord]\n" not in text:
        raise SystemExit(f"sandbox: no [supervisord] section in {release.suite}'s supervisord.conf")
    supervisord_conf.write_text(text.replace("[supervisord]\n", "[supervisord]\nnodaemon=true\n", 1))
    shutil.copy2(IMAGE_DIR / "sshd.conf", rootfs / "etc/supervisor/conf.d/sshd.conf")
    shutil.copy2(IMAGE_DIR / "testhost-init", rootfs / "usr/local/sbin/testhost-init")
    (rootfs / "usr/local/sbin/testhost-init").chmod(0o755)
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)


def import_rootfs(rootfs: Path, tag: str) -> None:
    """`tar | podman import`, with the entrypoint that starts supervisord as PID 1."""
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        run(
            ["podman", "import", "--change", 'CMD ["/usr/local/sbin/testhost-init"]', "-", tag],
            stdin=tar.stdout,
        )
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
