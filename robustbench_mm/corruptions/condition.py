"""A `Condition`: one column of the evaluation grid, and nothing about how to compute it."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain import Family

MASKS = ("independent", "shared")


@dataclass(frozen=True)
class Part:
    """One corruption of a joint condition, applied to one or more modalities.

    param : the kernel's parameter on the data as the kernel sees it: when `pixel_max` is set,
        the kernel runs on raw pixels in [0, pixel_max] and param is in the kernel's own unit there
        (gaussian_noise: sigma as a fraction of the range, i.e. raw sigma / pixel_max).
    options : keyword options of the kernel, as sorted (name, value) pairs (e.g. channels=shared).
    shared_noise : one noise field for all the part's modalities (same shape required), as QMF's
        RGB-D test gives RGB and depth.
    rate : this part's own fraction of samples (None: the condition's rate), e.g. QMF's salt and
        pepper on 0.5 x level/100 of the images while the text is blanked on 0.5.
    to_raw : per modality, (name, scale, offset) with raw = x * scale + offset per channel
        (tuples of one value or one per channel); empty when the part works in the data's units.
    """

    corruption: str
    modalities: tuple[str, ...]
    param: float
    options: tuple[tuple[str, object], ...] = ()
    shared_noise: bool = False
    pixel_max: float | None = None
    to_raw: tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...] = ()
    rate: float | None = None

    @property
    def label(self) -> str:
        """The part in a condition key: name@modalities:p=param[,option=value...]."""
        extra = [f"{k}={v}" for k, v in self.options]
        extra += ["noise=shared"] * self.shared_noise
        extra += [] if self.rate is None else [f"rate={self.rate:g}"]
        extra += [f"{m}*{'/'.join(f'{v:g}' for v in s)}+{'/'.join(f'{v:g}' for v in o)}" for m, s, o in self.to_raw]
        return f"{self.corruption}@{'+'.join(self.modalities)}:p={self.param:g}" + "".join(f",{e}" for e in extra)


@dataclass(frozen=True)
class Condition:
    """One perturbation setting applied to a whole evaluation set.

    family : a registered condition family (`families.py`); the built-ins are `Family.CLEAN`,
        CORRUPTION (a registered corruption), REMOVAL (modalities missing, `name` is the fill:
        zero, mean, noise, mask) and CONFLICT (modalities swapped in from a sample of another class).
    name : corruption name, fill name, "clean" or "conflict".
    modalities : the modalities it touches (empty for clean).
    level : severity level 0-5 (continuous allowed) for corruptions; 0 otherwise.
    param : a raw parameter in the corruption's units that overrides the severity table (presets).
    rate : fraction of samples affected, chosen per sample by common random numbers (1 = all).
    group : the protocol group it came from, for reports.
    parts : a joint condition (family "corruption"): several corruptions applied together, each
        to its modalities; `name` joins their names, `modalities` lists every touched modality.
    masks : for a joint condition, "independent" (each modality draws its own per-sample mask at
        its part's rate, else `rate`: the same mask a single-modality condition on it draws) or
        "shared" (one uniform draw per sample, each part perturbing where it is below its rate:
        nested, so a part at a lower rate perturbs a subset of the samples of one at a higher).
    """

    family: str
    name: str
    modalities: tuple[str, ...] = ()
    level: float = 0.0
    param: float | None = None
    rate: float = 1.0
    group: str = ""
    parts: tuple[Part, ...] = ()
    masks: str = "independent"

    @property
    def key(self) -> str:
        """Stable identity, used to seed the condition's randomness and to name its results."""
        mods = "+".join(self.modalities) or "-"
        param = "" if self.param is None else f"|p={self.param:g}"
        joint = "" if not self.parts else f"|joint={';'.join(p.label for p in self.parts)}|masks={self.masks}"
        return f"{self.family}|{self.name}|{mods}|l={self.level:g}{param}|r={self.rate:g}{joint}"

    @property
    def touched(self) -> tuple[str, ...]:
        """Modalities whose inputs change (the engine re-encodes only these); clean names none."""
        return self.modalities


CLEAN = Condition(family=Family.CLEAN, name="clean", group="clean")
