"""Log lines on stderr and external commands that fail loudly."""

import subprocess
import sys
from typing import Any


def log(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, failing loudly with its output when it exits non-zero."""
    kwargs.setdefault("text", True)
    kwargs.setdefault("capture_output", True)
    proc = subprocess.run(argv, check=False, **kwargs)
    if proc.returncode != 0:
        output = (proc.stdout or "") + (proc.stderr or "")
        raise SystemExit(f"sandbox: {' '.join(argv)} failed ({proc.returncode}):\n{output[-3000:]}")
    return proc
