"""Invalid configs: ``sc2s3 check-config`` (and every other command) exits 78 with one line on
stderr that names the key."""

from __future__ import annotations

import subprocess

import pytest
from conftest import AGENT_BIN

GOOD = """\
[soundcloud]
client_id = "cid"
client_secret_file = "{secret}"
accounts = ["band-one", "soundcloud:users:948745750"]
[s3]
bucket = "my-archive"
[agent]
part_size_mib = 16
"""


def run_check(tmp_path, text: str, command: str = "check-config") -> subprocess.CompletedProcess:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    path = tmp_path / "config.toml"
    path.write_text(text.replace("{secret}", str(secret)))
    return subprocess.run([str(AGENT_BIN), command, "--config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_good_config_passes(tmp_path):
    result = run_check(tmp_path, GOOD)
    assert result.returncode == 0, result.stderr
    assert "ok (2 accounts, bucket my-archive)" in result.stdout


@pytest.mark.parametrize(("change", "key"), [
    (lambda t: t.replace('bucket = "my-archive"\n', ""), "s3.bucket"),
    (lambda t: t.replace("part_size_mib = 16", "part_size_mib = 4"), "agent.part_size_mib"),
    (lambda t: t.replace("part_size_mib = 16", "part_size_mib = 6000"), "agent.part_size_mib"),
    (lambda t: t.replace("part_size_mib = 16", "concurrency = 0"), "agent.concurrency"),
    (lambda t: t.replace("part_size_mib = 16", "poll_interval_s = 0"), "agent.poll_interval_s"),
    (lambda t: t.replace("[agent]", "[agnet]"), "agnet"),
    (lambda t: t.replace("[s3]", "[s4]"), "s4: unknown key"),
    (lambda t: t.replace("part_size_mib", "part_size_mb"), "agent.part_size_mb"),
    (lambda t: t.replace('client_id = "cid"', 'client_id = "cid'), "TOML syntax error"),
    (lambda t: t.replace("{secret}", "/nonexistent/secret"), "soundcloud.client_secret_file"),
    (lambda t: t.replace('["band-one", "soundcloud:users:948745750"]', "[]"), "soundcloud.accounts"),
    (lambda t: t.replace("[s3]", '[s3]\nendpoint_url = "ftp://x"'), "s3.endpoint_url"),
    (lambda t: t.replace('client_id = "cid"', 'client_id = "cid"\napi_url = "api.x.com"'),
     "soundcloud.api_url"),
    (lambda t: t.replace('bucket = "my-archive"', 'bucket = "My_Archive"'), "s3.bucket"),
])
def test_invalid_config_exits_78_naming_the_key(tmp_path, change, key):
    result = run_check(tmp_path, change(GOOD))
    assert result.returncode == 78, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]


def test_every_command_refuses_an_invalid_config(tmp_path):
    bad = GOOD.replace("part_size_mib = 16", "part_size_mib = 4")
    for command in ("verify", "status", "run"):
        result = run_check(tmp_path, bad, command)
        assert result.returncode == 78, (command, result.stderr)


def test_missing_config_file_exits_78(tmp_path):
    result = subprocess.run([str(AGENT_BIN), "check-config", "--config", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78 and "--config" in result.stderr


def test_usage_error_exits_2():
    result = subprocess.run([str(AGENT_BIN), "mirror"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2


def test_an_unexpected_exception_exits_70_with_one_line(monkeypatch, capsys, tmp_path):
    """A bug anywhere below the command line is 70 (internal error), not a traceback and 1."""
    from sc2s3 import cli

    def broken(_path):
        raise RuntimeError("catalog model out of step")

    monkeypatch.setattr(cli, "load_config", broken)
    monkeypatch.setattr("sys.argv", ["sc2s3", "check-config", "--config", str(tmp_path / "c.toml")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 70
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sc2s3: internal error (a bug; the traceback is in the log): "
                   "RuntimeError: catalog model out of step"], err
