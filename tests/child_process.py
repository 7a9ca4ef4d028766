"""Shared by the tests that need a fresh interpreter (process-wide state such as the code
cache, a patched code generator, a missing libgomp or a guarded buffer that may crash)."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `code` with `python -c` under `env`; text stdout and stderr, never raising on exit."""
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
