"""The files a deploy reads from a running sandbox.

- `.sandbox/sandbox_vars.yml`: extra vars (`-e @...`) with the endpoints and credentials, plus
  `sandbox_debian_releases` (inventory host -> Debian release) for tests that read the file;
- `inventory/sandbox/host_vars/thN.yml`: the host var `sandbox_debian_release`, which Ansible
  loads for `-i inventory/sandbox/hosts.yml` without further options (git ignores them).

`up` writes them, `down` removes them: their values are only true while the sandbox runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .loopback import LOOPBACK
from .paths import HOST_VARS_DIR, VARS_PATH
from .services import BUCKET, REGION
from .state import credentials

HEADER = "# Written by inventory/sandbox/sandbox.py up; removed by down. Sandbox only."


def sandbox_vars(state: dict[str, Any]) -> dict[str, Any]:
    """The Ansible extra vars that point a deploy at this sandbox."""
    ports, creds = state["ports"], credentials(state)
    soundcloud = f"http://{LOOPBACK}:{ports['soundcloud']}"
    return {
        "sc2s3_bucket": BUCKET,
        "sc2s3_region": REGION,
        "sc2s3_s3_endpoint_url": f"http://{LOOPBACK}:{ports['seaweedfs']}",
        "sc2s3_s3_access_key_id": creds["s3_access_key_id"],
        "sc2s3_s3_secret_access_key": creds["s3_secret_access_key"],
        "sc2s3_soundcloud_api_url": soundcloud,
        "sc2s3_soundcloud_auth_url": soundcloud,
        "sc2s3_soundcloud_client_id": creds["soundcloud_client_id"],
        "sc2s3_soundcloud_client_secret": creds["soundcloud_client_secret"],
        "sc2s3_aws_endpoint_url": f"http://{LOOPBACK}:{ports['moto']}",
        # The agents publish their CloudWatch figures to the same moto.
        "sc2s3_cloudwatch_endpoint_url": f"http://{LOOPBACK}:{ports['moto']}",
        "sandbox_debian_releases": {
            host["inventory_host"]: host["debian_release"] for host in state.get("hosts", [])
        },
    }


def yaml_lines(values: dict[str, Any]) -> str:
    """YAML with one JSON value per line (JSON scalars and objects are valid YAML)."""
    lines = ["---", HEADER, *(f"{key}: {json.dumps(value)}" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def write_sandbox_vars(state: dict[str, Any]) -> None:
    VARS_PATH.write_text(yaml_lines(sandbox_vars(state)))
    VARS_PATH.chmod(0o600)


def written_host_vars() -> list[Path]:
    """The host_vars files this module wrote (a hand-written one lacks HEADER)."""
    return [p for p in sorted(HOST_VARS_DIR.glob("th*.yml")) if HEADER in p.read_text()]


def write_host_vars(hosts: list[dict[str, Any]]) -> None:
    """`host_vars/thN.yml` with `sandbox_debian_release` for each running host; the files of
    hosts no longer running are removed."""
    wanted = {HOST_VARS_DIR / f"{host['inventory_host']}.yml": host for host in hosts}
    for path in written_host_vars():
        if path not in wanted:
            path.unlink()
    for path, host in wanted.items():
        if path.exists() and HEADER not in path.read_text():
            raise SystemExit(f"sandbox: {path} was not written by sandbox.py; not replacing it")
        path.write_text(yaml_lines({"sandbox_debian_release": host["debian_release"]}))


def remove_handoff() -> None:
    """Remove the vars files: the endpoints and hosts in them are about to go away."""
    VARS_PATH.unlink(missing_ok=True)
    for path in written_host_vars():
        path.unlink()
