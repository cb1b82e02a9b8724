"""Test-session settings shared by every test file."""

import torch

# The test tensors are tiny: intra-op threads only add contention, which on a busy 2-core runner
# made single calls ~30x slower. Subprocess tests set the same in their own scripts.
torch.set_num_threads(1)
