"""Fusion models: three backbones with one prediction head, two baselines, and `build_model`.

Every model is `forward(inputs, present) == fuse({m: encode(m, inputs[m])}, present)`, so the
engine can re-encode only the modality a condition touched. Absent modalities (present False)
have their features zeroed (concat, conv), masked out of attention (transformer) or left out of
the average (late, uncertainty-late).

Backbones (`calibration=True` inserts `PreFusionCalibration` between encoders and fusion; the
backbone and head are unchanged):
- concat      : pooled features concatenated -> MLP -> head
- transformer : per-modality feature tokens + modality embeddings -> transformer encoder
                (presence as key padding) -> masked mean -> head
- conv        : pooled features stacked as M channels of length dim -> 1-D conv stack -> head
Baselines:
- late             : one head per modality; log of the average of their probabilities
- uncertainty-late : UDML-*style* late fusion (not UDML's code; `udml` is that): unimodal softmaxes
                     weighed by a learned noise estimate and a dropout-measured reliance
Methods from the literature, each in its own module (see docs/methods.md):
- udml (udml.py), qmf (qmf.py), cal (cal.py), unimodal (unimodal.py)

Every fusion is one class decorated with `@backbone("name", description=...)`, which registers it
in `BACKBONES` (a `Registry`): `build_model`, checkpoints, `rbmm train --fusion` and `rbmm list`
find it there. The base class attaches the pre-fusion calibration once the subclass's constructor
has run, so no backbone can forget it and its weights are registered (and initialised) last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..datasets.batch import PAD_ID, UNK_ID, ModalitySpec
from ..domain import Task, parse_task
from ..errors import InputError, one_of
from ..registry import Registry, source_of
from .calibration import PreFusionCalibration
from .encoders import build_encoder, pool

DEFAULTS = {
    "calibration": False,
    "task": "classification",
    "dim": 64,  # feature width of every encoder
    "width": 128,  # hidden width inside vector encoders
    "hidden": 128,  # width of the fused representation fed to the head
    "dropout": 0.1,
    "layers": 1,  # transformer backbone
    "heads": 4,
    "conv_channels": 8,  # conv backbone
}


@dataclass(frozen=True)
class BackboneSpec:
    """A registered fusion: its class and what `build_model` and `rbmm list` need to know of it.

    tasks : the tasks it supports; calibration : whether `--calibration` applies to it.
    """

    name: str
    cls: type["FusionModel"]
    description: str
    tasks: tuple[Task, ...]
    calibration: bool


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def backbone(
    name: str, *, description: str, tasks: tuple[Task | str, ...] = tuple(Task), calibration: bool = True
) -> Callable[[type["FusionModel"]], type["FusionModel"]]:
    """Register a `FusionModel` subclass as fusion `name` (`--fusion name`, a checkpoint's `fusion`)."""
    parsed = tuple(parse_task(str(t), f"backbone {name!r}: task") for t in tasks)

    def register(cls: type["FusionModel"]) -> type["FusionModel"]:
        if not (isinstance(cls, type) and issubclass(cls, FusionModel)):
            raise InputError(f"backbone {name!r}: expected a FusionModel subclass, got {cls!r}")
        if getattr(BACKBONES.registered(name), "cls", None) is cls:
            return cls
        BACKBONES.add(name, BackboneSpec(name, cls, description, parsed, bool(calibration)), source_of(cls))
        return cls

    return register


def backbone_spec(fusion: str) -> BackboneSpec:
    """The backbone registered as `fusion`; a miss lists them as a config's and --fusion's choices."""
    if fusion not in BACKBONES:
        raise one_of("fusion", fusion, BACKBONES.names())
    return BACKBONES[fusion]


class PredictionHead(nn.Module):
    """The one head every backbone ends with: dropout + linear, (B, hidden) -> (B, outputs)."""

    def __init__(self, hidden: int, outputs: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _zero_absent(f: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    keep = present.to(f.dtype)
    return f * keep.view(-1, *([1] * (f.dim() - 1)))


class _CalibrationLast(type):
    """Attaches the calibration after the whole constructor (every subclass level) has run, so
    the other weights do not depend on it and its parameters come last in the state dict."""

    def __call__(cls, *args, **kwargs):
        model = super().__call__(*args, **kwargs)
        model._add_calibration()
        return model


class FusionModel(nn.Module, metaclass=_CalibrationLast):
    """Encoders + optional calibration + a fusion rule. Subclasses implement `fuse_features`.

    OPTIONS (class attribute): a subclass's own config defaults, on top of DEFAULTS.
    `check_config` (classmethod): a subclass's own checks of a normalised config.
    """

    OPTIONS: dict = {}

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.specs = [ModalitySpec.from_dict(d) for d in config["specs"]]
        self.modalities = [s.name for s in self.specs]
        self.task = config["task"]
        self.num_outputs = int(config["num_classes"]) if self.task == Task.CLASSIFICATION else 1
        dim = int(config["dim"])
        encoded = self.encoded_modalities()
        self.encoders = nn.ModuleList(
            build_encoder(s, dim, int(config["width"]), float(config["dropout"])) for s in self.specs if s.name in encoded
        )
        self._index = {m: i for i, m in enumerate(encoded)}

    def encoded_modalities(self) -> list[str]:
        """The modalities this model has an encoder for (all of them, except for `unimodal`)."""
        return list(self.modalities)

    @classmethod
    def check_config(cls, cfg: dict, modalities: list[str]) -> None:
        """Raise an InputError for a config this backbone cannot build (after the generic checks)."""
        if cfg.get("modality") is not None:
            raise InputError(f"'modality' (--modality) only applies to --fusion unimodal, not {cfg['fusion']!r}")

    def _add_calibration(self) -> None:
        """Called by the metaclass once the constructor has run (see `_CalibrationLast`)."""
        self.calibrate = (
            PreFusionCalibration(
                self.modalities, int(self.config["dim"]),
                conflict=float(self.config.get("calibration_conflict", 0.0)),  # opt-in, docs/gate-study.md
                relative=bool(self.config.get("calibration_relative", False)),
                cues=str(self.config.get("calibration_cues", "summary")),  # absent in older checkpoints: summary
                classes=self.num_outputs if self.task == Task.CLASSIFICATION else None,
            )
            if self.config["calibration"] else None
        )

    def gate_fields(self) -> list[str]:
        """The per-sample record fields `gate_records` fills: none without calibration."""
        if self.calibrate is None:
            return []
        return [f"gate_{kind}_{m}" for m in self.modalities for kind in ("instance", "dim")]

    def gate_records(self) -> dict[str, torch.Tensor]:
        """The gates of the last `fuse`, per sample (B,) float32: instance gate and mean dimension
        gate of each modality, NaN where the modality was absent."""
        if self.calibrate is None:
            return {}
        out = {}
        for m in self.modalities:
            out[f"gate_instance_{m}"], out[f"gate_dim_{m}"] = self.calibrate.last_gates[m]
        return out

    def encode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Raw input (B, *shape) of modality `name` -> features (B, dim) or (B, T, dim)."""
        if name not in self._index:
            raise one_of("modality", name, self.modalities)
        return self.encoders[self._index[name]](x)

    def presence(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """A bool (B,) mask for every modality; missing entries mean present."""
        present = present or {}
        out = {}
        for m in self.modalities:
            f = features[m]
            p = present.get(m)
            out[m] = torch.ones(f.shape[0], dtype=torch.bool, device=f.device) if p is None else p.to(f.device).bool()
        return out

    def calibrated_features(self, inputs, present):
        """Training-time encode -> presence -> calibration (absent features are masked in the losses)."""
        features = {m: self.encode(m, inputs[m]) for m in self.modalities}
        present = self.presence(features, present)
        if self.calibrate is not None:
            features = self.calibrate(features, present)
        return features, present

    def fuse(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Encoded features of every modality -> logits (B, C) or regression output (B,)."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise InputError(f"model needs features of modality {missing[0]!r}; got {', '.join(features) or 'none'}")
        present = self.presence(features, present)
        if self.calibrate is not None:
            features = self.calibrate(features, present)
        features = {m: _zero_absent(features[m], present[m]) for m in self.modalities}
        out = self.fuse_features(features, present)
        return out.squeeze(-1) if self.task == Task.REGRESSION else out

    def forward(self, inputs: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise InputError(f"model needs modality {missing[0]!r}; inputs have {', '.join(inputs) or 'none'}")
        return self.fuse({m: self.encode(m, inputs[m]) for m in self.modalities}, present)

    def fuse_features(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.task == Task.REGRESSION:
            return F.mse_loss(output, labels.float())
        return F.cross_entropy(output, labels)

    def training_loss(
        self,
        inputs: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor],
        labels: torch.Tensor,
        generator: torch.Generator,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The objective `train_model` minimises; baselines add their auxiliary terms.

        index : (B,) positions of the batch's samples in the training split (QMF keeps a
            per-sample loss history by it); the others ignore it.
        """
        return self.loss(self(inputs, present), labels)

    def start_epoch(self, epoch: int, epochs: int, n_train: int) -> None:
        """Called by `train_model` before each epoch (1-based); methods with a schedule use it."""

    def selection_start(self, epochs: int) -> int:
        """First epoch whose weights early stopping may keep (UDML keeps none from its clean phase)."""
        return 1


@backbone("concat", description="Late concatenation of pooled features -> MLP -> head.")
class ConcatFusion(FusionModel):
    """Late concatenation of pooled features -> MLP -> head."""

    def __init__(self, config: dict):
        super().__init__(config)
        dim, hidden, p = int(config["dim"]), int(config["hidden"]), float(config["dropout"])
        self.mix = nn.Sequential(nn.Linear(dim * len(self.modalities), hidden), nn.GELU())
        self.head = PredictionHead(hidden, self.num_outputs, p)

    def fuse_features(self, features, present):
        return self.head(self.mix(torch.cat([pool(features[m]) for m in self.modalities], dim=-1)))


@backbone(
    "transformer",
    description="Modality tokens (+ modality embeddings) through a transformer encoder; presence masks keys.",
)
class TransformerFusion(FusionModel):
    """Modality tokens (+ modality embeddings) through a transformer encoder; presence masks keys."""

    def __init__(self, config: dict):
        super().__init__(config)
        dim, hidden, p = int(config["dim"]), int(config["hidden"]), float(config["dropout"])
        self.modality_embedding = nn.Parameter(0.02 * torch.randn(len(self.modalities), dim))
        layer = nn.TransformerEncoderLayer(
            dim, int(config["heads"]), dim_feedforward=2 * dim, dropout=p, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, int(config["layers"]), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Sequential(nn.Linear(dim, hidden), nn.GELU())
        self.head = PredictionHead(hidden, self.num_outputs, p)

    def fuse_features(self, features, present):
        tokens, keep = [], []
        for i, m in enumerate(self.modalities):
            f = features[m]
            f = f if f.dim() == 3 else f.unsqueeze(1)
            tokens.append(f + self.modality_embedding[i])
            keep.append(present[m].unsqueeze(1).expand(-1, f.shape[1]))
        x, keep = torch.cat(tokens, dim=1), torch.cat(keep, dim=1)
        keep = keep | ~keep.any(dim=1, keepdim=True)  # nothing present: attend to the (zeroed) tokens
        h = self.norm(self.encoder(x, src_key_padding_mask=~keep))
        w = keep.unsqueeze(-1).to(h.dtype)
        return self.head(self.mix((h * w).sum(1) / w.sum(1)))


@backbone("conv", description="Pooled features stacked as M channels over the feature axis -> two 1-D convs -> head.")
class ConvFusion(FusionModel):
    """Pooled features stacked as M channels over the feature axis -> two 1-D convs -> head."""

    def __init__(self, config: dict):
        super().__init__(config)
        dim, hidden, p = int(config["dim"]), int(config["hidden"]), float(config["dropout"])
        c = int(config["conv_channels"])
        self.conv = nn.Sequential(
            nn.Conv1d(len(self.modalities), c, 3, padding=1), nn.GELU(),
            nn.Conv1d(c, c, 3, padding=1), nn.GELU(), nn.Flatten(),
        )
        self.mix = nn.Sequential(nn.Linear(c * dim, hidden), nn.GELU())
        self.head = PredictionHead(hidden, self.num_outputs, p)

    def fuse_features(self, features, present):
        stacked = torch.stack([pool(features[m]) for m in self.modalities], dim=1)  # (B, M, dim)
        return self.head(self.mix(self.conv(stacked)))


class _UnimodalHeads(FusionModel):
    """Shared parts of the baselines: one MLP head per modality on its pooled features."""

    def __init__(self, config: dict):
        super().__init__(config)
        dim, hidden, p = int(config["dim"]), int(config["hidden"]), float(config["dropout"])
        self.unimodal = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), PredictionHead(hidden, self.num_outputs, p))
            for _ in self.modalities
        )

    def unimodal_outputs(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M, outputs): each modality's own prediction."""
        return torch.stack([self.unimodal[i](pool(features[m])) for i, m in enumerate(self.modalities)], dim=1)

    def combine(self, outputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted average (weights (B, M) sum to 1) of probabilities, returned as log-probs."""
        if self.task == Task.REGRESSION:
            return (weights.unsqueeze(-1) * outputs).sum(1)
        probs = (weights.unsqueeze(-1) * outputs.softmax(-1)).sum(1)
        return probs.clamp(min=1e-12).log()

    @staticmethod
    def _mask(present: dict[str, torch.Tensor], names: list[str], like: torch.Tensor) -> torch.Tensor:
        mask = torch.stack([present[m] for m in names], dim=1).to(like.dtype)
        return torch.where(mask.sum(1, keepdim=True) > 0, mask, torch.ones_like(mask))

    def unimodal_loss(self, outputs: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each head learns on its own, only where its modality is present."""
        m = outputs.shape[1]
        flat = outputs.reshape(-1, outputs.shape[-1])
        target = labels.repeat_interleave(m)
        if self.task == Task.REGRESSION:
            per = F.mse_loss(flat.squeeze(-1), target.float(), reduction="none")
        else:
            per = F.cross_entropy(flat, target, reduction="none")
        w = mask.reshape(-1)
        return (per * w).sum() / w.sum().clamp(min=1.0) * m


@backbone(
    "late",
    description="Average of the unimodal heads' probabilities over present modalities (mean for regression).",
)
class LateFusion(_UnimodalHeads):
    """Average of the unimodal heads' probabilities over present modalities (mean for regression)."""

    def fuse_features(self, features, present):
        outputs = self.unimodal_outputs(features)
        mask = self._mask(present, self.modalities, outputs)
        return self.combine(outputs, mask / mask.sum(1, keepdim=True))

    def training_loss(self, inputs, present, labels, generator, index=None):
        features, present = self.calibrated_features(inputs, present)
        outputs = self.unimodal_outputs(features)
        return self.unimodal_loss(outputs, self._mask(present, self.modalities, outputs), labels)


@backbone(
    "uncertainty-late",
    description="UDML-*style* late fusion with our own recipe, not UDML's code (`udml` follows that).",
)
class UncertaintyLateFusion(_UnimodalHeads):
    """UDML-*style* late fusion with our own recipe, not UDML's code (`udml` follows that).

    Inspired by Wei et al., "Unbiased Dynamic Multimodal Fusion", but not what its released code
    does (docs/methods.md sets the two side by side):
    - noise estimate: each step, each modality of a separate noisy copy of the batch gets
      Gaussian noise of intensity s ~ U(0, 1) on half the samples (s = 0 on the rest; std =
      s * noise_scale * data std; tokens: each replaced with probability s); a sigmoid regressor
      on the modality's pooled features learns s with a full-weight MSE, and its gradient reaches
      the encoder. u_m in (0, 1) is its prediction on the real input;
    - reliance: each step drops one modality at a time from the equal-weight average of the
      unimodal heads and measures the loss increase r_m (clamped at 1e-4, divided by its mean
      over modalities); `reliance` (buffer) is its EMA;
    - fusion: softmaxes of the unimodal heads averaged with weights proportional to
      present_m * (1 - u_m) * ((1 + reliance_m) / 2) ** -reliance_strength.
    The reliance factor is not near 1: reliance averages 1 over modalities, but each entry can be
    far from it, so the factor reweighs the modalities on its own (docs/methods.md gives the
    factors measured after training on mfeat).
    """

    OPTIONS = {
        "noise_scale": 2.0,  # injected noise std at intensity 1, in units of the data's std
        "reliance_momentum": 0.9,  # EMA of the reliance measured by modality dropout
        "reliance_strength": 0.5,  # exponent of the reliance correction (0 = none)
    }

    def __init__(self, config: dict):
        super().__init__(config)
        dim = int(config["dim"])
        self.uncertainty = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, 1)) for _ in self.modalities
        )
        self.register_buffer("reliance", torch.ones(len(self.modalities)))

    def predicted_noise(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M) estimated noise intensity in (0, 1) of each modality's input."""
        return torch.cat(
            [torch.sigmoid(self.uncertainty[i](pool(features[m]))) for i, m in enumerate(self.modalities)], dim=1
        )

    def fusion_weights(self, features: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M) weights summing to 1 over present modalities."""
        u = self.predicted_noise(features).detach()
        mask = self._mask(present, self.modalities, u)
        correction = ((1.0 + self.reliance) / 2.0).pow(-float(self.config["reliance_strength"]))
        w = mask * (1.0 - u).clamp(min=1e-3) * correction
        return w / w.sum(1, keepdim=True)

    def fuse_features(self, features, present):
        return self.combine(self.unimodal_outputs(features), self.fusion_weights(features, present))

    def _noisy(self, name: str, x: torch.Tensor, level: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        spec = self.specs[self._index[name]]
        if spec.kind == "tokens":
            hit = torch.rand(x.shape, generator=generator).to(x.device) < level.view(-1, 1)
            random_ids = torch.randint(UNK_ID + 1, max(int(spec.vocab_size), UNK_ID + 2), x.shape, generator=generator)
            return torch.where(hit & (x != PAD_ID), random_ids.to(x.device, x.dtype), x)
        std = self.encoders[self._index[name]].norm.std
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        scale = level.view(-1, *([1] * (x.dim() - 1))) * float(self.config["noise_scale"])
        return x + scale * std * noise

    def training_loss(self, inputs, present, labels, generator, index=None):
        features, present = self.calibrated_features(inputs, present)
        outputs = self.unimodal_outputs(features)
        mask = self._mask(present, self.modalities, outputs)
        loss = self.unimodal_loss(outputs, mask, labels)
        loss = loss + self.loss(self.combine(outputs, self.fusion_weights(features, present)), labels)

        # noise-aware uncertainty: regress the injected intensity (half the samples stay clean)
        b = labels.shape[0]
        regress = []
        for i, m in enumerate(self.modalities):
            level = torch.rand(b, generator=generator) * (torch.rand(b, generator=generator) < 0.5)
            level = level.to(labels.device)
            noisy = self.encode(m, self._noisy(m, inputs[m], level, generator))
            pred = torch.sigmoid(self.uncertainty[i](pool(noisy))).squeeze(-1)
            regress.append(F.mse_loss(pred, level))
        loss = loss + torch.stack(regress).sum()

        # reliance bias by modality dropout on the equal-weight average (no gradient)
        with torch.no_grad():
            full = self.loss(self.combine(outputs, mask / mask.sum(1, keepdim=True)), labels)
            increase = []
            for i in range(len(self.modalities)):
                kept = mask.clone()
                kept[:, i] = 0.0
                kept = torch.where(kept.sum(1, keepdim=True) > 0, kept, mask)
                increase.append(self.loss(self.combine(outputs, kept / kept.sum(1, keepdim=True)), labels) - full)
            r = torch.stack(increase).clamp(min=1e-4)
            r = r / r.mean()
            mom = float(self.config["reliance_momentum"])
            self.reliance.mul_(mom).add_((1.0 - mom) * r)
        return loss


def normalize_config(config: dict) -> dict:
    """Defaults filled in and checked; specs kept as plain dicts (checkpoint-safe)."""
    if not isinstance(config, dict):
        raise InputError(f"model config must be a dict, got {type(config).__name__}")
    if "fusion" not in config:
        raise InputError(f"model config needs 'fusion'; expected one of: {', '.join(BACKBONES)}")
    spec = backbone_spec(config["fusion"])
    cfg = {**DEFAULTS, **spec.cls.OPTIONS, **config}
    task = parse_task(str(cfg["task"]))
    if task not in spec.tasks:
        raise InputError(f"fusion {cfg['fusion']!r} supports the task(s) {', '.join(spec.tasks)}, not {cfg['task']!r}")
    specs = cfg.get("specs")
    if not specs:
        raise InputError("model config needs 'specs': a non-empty list of modality specs")
    cfg["specs"] = [s.to_dict() if isinstance(s, ModalitySpec) else dict(s) for s in specs]
    names = [s["name"] for s in cfg["specs"]]
    if len(set(names)) != len(names):
        raise InputError(f"model config: duplicate modality names in {names}")
    if cfg["task"] == Task.CLASSIFICATION and (not cfg.get("num_classes") or int(cfg["num_classes"]) < 2):
        raise InputError(f"model config: classification needs num_classes >= 2, got {cfg.get('num_classes')!r}")
    cfg["calibration"] = bool(cfg["calibration"])
    if cfg["calibration"] and not spec.calibration:
        raise InputError(f"fusion {cfg['fusion']!r} has no pre-fusion calibration (it fuses nothing); drop --calibration")
    spec.cls.check_config(cfg, names)
    return cfg


def build_model(config: dict) -> FusionModel:
    """A fresh model from a config (see DEFAULTS and each class's OPTIONS): fusion, calibration, specs..."""
    cfg = normalize_config(config)
    return backbone_spec(cfg["fusion"]).cls(cfg)
