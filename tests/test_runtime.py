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


POLICY = ("import os, sys; from robustbench_mm.runtime import thread_policy; "
          "thread_policy(int(sys.argv[1]) if len(sys.argv) > 1 else None); "
          "import torch; print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads())")


def _policy(env_extra: dict[str, str], *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)} | env_extra
    return subprocess.run([sys.executable, "-c", POLICY, *args], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_idle_threads_sleep_unless_the_user_chose_a_wait_policy():
    assert _policy({}).split()[0] == "PASSIVE"
    assert _policy({"OMP_WAIT_POLICY": "ACTIVE"}).split()[0] == "ACTIVE"


def test_an_explicit_thread_count_reaches_torch_before_and_after_it_loads():
    assert _policy({}, "1") == "PASSIVE 1"
    code = "import torch; from robustbench_mm.runtime import thread_policy; thread_policy(1); print(torch.get_num_threads())"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), "OMP_NUM_THREADS": "2"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip() == "1"


def test_a_thread_count_below_one_is_a_usage_error(tmp_path):
    from robustbench_mm.cli import main

    assert main(["--threads", "0", "list", "protocols"]) == 2
