"""Test-session settings shared by every test file."""

from pathlib import Path

import pytest
import torch

# The test tensors are tiny: intra-op threads only add contention, which on a busy 2-core runner
# made single calls ~30x slower. Subprocess tests set the same in their own scripts.
torch.set_num_threads(1)


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A folder no file can be created in: mode 0o555, or /sys where mode bits do not bind (root)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        try:
            (candidate / "probe").touch()
        except OSError:
            return candidate
        (candidate / "probe").unlink()
    pytest.skip("no read-only folder available")
