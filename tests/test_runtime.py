"""The CLI's allocator setting: applied on glibc, skipped on request."""

import subprocess
import sys

import pytest

CODE = "from robustbench_mm.runtime import keep_freed_memory; print(keep_freed_memory())"


def _applied(env_value: str | None) -> str:
    env = {"PATH": "/usr/bin:/bin"} | ({"RBMM_MALLOC": env_value} if env_value else {})
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_applied_on_linux_and_skipped_when_asked():
    assert _applied(None) == "True"
    assert _applied("default") == "False"
