"""Token corruptions on (B, L) integer id batches. Ids stay in [0, vocab); PAD (0) positions are
never changed (truncation only turns real tokens into PAD). The parameter is a fraction of tokens.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from ..datasets.batch import PAD_ID, UNK_ID, ModalitySpec
from ..errors import InputError
from .registry import corruption
from .rng import SampleRandom

_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7)


@corruption(
    "blank",
    kinds=("tokens",),
    severity=_FRACTIONS,
    unit="fraction of words replaced by the blank id (QMF blank probability 0.1 x level)",
    description="word dropout to the unknown/blank id",
)
def blank(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec,
          blank_id: int = -1, vocab: str = "") -> torch.Tensor:
    """Each word replaced by the blank id with probability `param`.

    vocab : "" (each id is a word) or the path of a BERT-style vocab.txt (one token per line, line
        n is id n): a word is a token and the "##" pieces after it; [CLS]-style tokens are kept. A blanked word becomes one blank
        token and its pieces are removed (the row is shifted left and padded), as QMF blanks the
        whitespace word before tokenising (QingyangZhang/QMF text-image-classification/src/data/
        dataset.py JsonlDataset.__getitem__: `wordlist[i] = '_'`, then `self.tokenizer(...)`).
    blank_id : the id written in place of a word; default (-1): the id of "_" in `vocab` (QMF's
        blank), or the unknown id 1 without a vocab.
    """
    real = x != PAD_ID
    u = rng.uniform(x.shape[1], dtype=torch.float64)
    if not vocab:
        hit = (u < param) & real
        return torch.where(hit, torch.full_like(x, UNK_ID if blank_id < 0 else blank_id), x)
    pieces, special, underscore = _word_pieces(vocab)
    if int(x.max()) >= pieces.numel():
        raise InputError(f"blank: option vocab {vocab!r} has {pieces.numel()} tokens; the data has id {int(x.max())}")
    continues = pieces.to(x.device)[x] & real
    pos = torch.arange(x.shape[1], device=x.device).expand_as(x)
    start = torch.cummax(torch.where(continues, torch.zeros_like(pos), pos), dim=1).values  # each token's word start
    hit = (u.gather(1, start) < param) & real & ~special.to(x.device)[x]
    blanked = torch.where(hit & ~continues, torch.full_like(x, underscore if blank_id < 0 else blank_id), x)
    dropped = hit & continues
    order = torch.argsort(dropped.to(torch.int8), dim=1, stable=True)  # kept tokens first, in order
    return torch.where(torch.gather(dropped, 1, order), torch.full_like(x, PAD_ID), torch.gather(blanked, 1, order))


@lru_cache(maxsize=4)
def _word_pieces(path: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(is-continuation per id, is-special per id, id of "_") from a BERT-style vocab.txt; special
    tokens ([CLS], [SEP], ...) are added after QMF's blanking and so are never blanked."""
    try:
        tokens = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"blank: option vocab {path!r}: cannot read ({e.strerror or e}); expected a BERT-style vocab.txt") from None
    if "_" not in tokens:
        raise InputError(f"blank: option vocab {path!r} has no '_' token (QMF's blank); give blank_id")
    special = [t.startswith("[") and t.endswith("]") for t in tokens]
    return torch.tensor([t.startswith("##") for t in tokens]), torch.tensor(special), tokens.index("_")


@corruption(
    "replace",
    kinds=("tokens",),
    severity=_FRACTIONS,
    unit="fraction of tokens replaced by a random word id",
    description="random word replacement (ids 2..vocab-1)",
)
def replace(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    hit = (rng.uniform(x.shape[1], dtype=torch.float64) < param) & (x != PAD_ID)
    words = max(1, spec.vocab_size - 2)
    new = (2 + rng.integers(words, x.shape[1])).clamp(max=spec.vocab_size - 1).to(x.dtype)
    return torch.where(hit, new, x)


@corruption(
    "swap",
    kinds=("tokens",),
    severity=_FRACTIONS,
    unit="fraction of adjacent token pairs exchanged",
    description="local swaps: disjoint neighbouring pairs exchanged (a permutation, nothing copied)",
)
def swap(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    b, length = x.shape
    offset = rng.integers(2)  # (B,) pairs start at 0 or 1
    u = rng.uniform(length, dtype=torch.float64)
    pos = torch.arange(length, device=x.device)[None, :]
    rel = pos - offset[:, None]
    first = rel.remainder(2) == 0
    partner = torch.where(first, pos + 1, pos - 1)
    start = torch.where(first, pos, pos - 1)
    valid = (rel >= 0) & (partner >= 0) & (partner < length) & (start >= 0)
    partner_c = partner.clamp(0, length - 1)
    start_c = start.clamp(0, length - 1)
    real = x != PAD_ID
    chosen = valid & (torch.gather(u, 1, start_c) < param) & real & torch.gather(real, 1, partner_c)
    source = torch.where(chosen, partner_c, pos.expand(b, length))
    return torch.gather(x, 1, source)


@corruption(
    "truncate",
    kinds=("tokens",),
    severity=_FRACTIONS,
    unit="fraction of each sequence's real tokens cut from the end",
    description="truncation: the last tokens replaced by PAD",
)
def truncate(x: torch.Tensor, param: float, rng: SampleRandom, spec: ModalitySpec) -> torch.Tensor:
    real = x != PAD_ID
    rank = torch.cumsum(real.long(), dim=1) - 1
    keep = torch.ceil(real.sum(dim=1, keepdim=True) * (1.0 - param))
    return torch.where(real & (rank >= keep), torch.full_like(x, PAD_ID), x)
