"""Adapters: a foreign model in its own shape, seen by the engine as `dict[str, Tensor] -> logits`.

The field's models take their modalities as arguments (`forward(audio, visual)`,
`forward(rgb, depth)`), return tuples (`(a, v, out)`) or dicts, and expect their own
preprocessing (a spectrogram, normalisation). An `Adapter` says how to call one, so that no
wrapper file is needed: which modality goes to which positional or keyword argument, which
output is the logits, and which function turns a modality's raw signal into what the model reads.
The preprocessing runs inside the forward pass, i.e. on the device and after the condition has
perturbed the raw signal: corruptions act on pixels and waveforms, the model sees its own input.
"""

from __future__ import annotations

import inspect
from typing import Callable

from torch import Tensor, nn

from ..errors import InputError


def takes_present(module: nn.Module) -> bool:
    """Whether the module's forward has a `present` argument (the per-sample modality mask)."""
    try:
        return "present" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def receives_present(module: nn.Module) -> bool:
    """Whether the user's model itself is given the presence mask: through an adapter only when the
    adapter passes the dict on (no `inputs` mapping) to a forward that names `present`. What the
    input contract states; the engine still calls an adapter with the mask, which it may drop."""
    if isinstance(module, Adapter):
        return module.inputs is None and module._model_takes_present
    return takes_present(module)


def parse_inputs(value: object, where: str) -> tuple[str, ...] | dict[str, str] | None:
    """A card's `inputs`: a list of modality names (positional order) or a table modality ->
    keyword name. Anything else is an InputError naming `where`."""
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        if len(set(value)) != len(value):
            raise InputError(f"{where}: inputs {value!r} names a modality twice; expected each modality once")
        return tuple(value)
    if isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str) and v.isidentifier() for k, v in value.items()):
        if len(set(value.values())) != len(value):
            raise InputError(f"{where}: inputs {value!r} passes two modalities as one keyword")
        return dict(value)
    raise InputError(
        f"{where}: inputs {value!r}; expected a list of modality names (positional arguments, in order) "
        "or a table modality = \"keyword\""
    )


def parse_output(value: object, where: str) -> int | str | None:
    """A card's `output`: a tuple index (int >= 0) or a dict key (str)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (isinstance(value, str) and value):
        return value
    raise InputError(f"{where}: output {value!r}; expected a tuple index (an integer >= 0) or a dict key such as \"logits\"")


class Adapter(nn.Module):
    """Call `model` the way it was written, from the engine's `(inputs, present)`.

    inputs : None (the model takes the dict itself, and `present` if its forward names it), a tuple
        of modality names (passed positionally, in that order), or {modality: keyword}.
    output : None (the model's output as it is), an index into a returned tuple/list, or a key of
        a returned dict.
    preprocess : {modality: function}; each is applied to that modality's batch (B, ...) on the
        device after the perturbation, and its result is what the model receives.
    """

    def __init__(self, model: nn.Module, name: str, inputs: tuple[str, ...] | dict[str, str] | None = None,
                 output: int | str | None = None, preprocess: dict[str, Callable[[Tensor], Tensor]] | None = None):
        super().__init__()
        self.model = model
        self.name = name
        self.inputs = inputs
        self.output = output
        self.preprocess = dict(preprocess or {})
        self._model_takes_present = takes_present(model)

    def forward(self, inputs: dict[str, Tensor], present: dict[str, Tensor] | None = None):
        wanted = list(self.inputs) if self.inputs is not None else list(inputs)
        missing = [k for k in [*wanted, *self.preprocess] if k not in inputs]
        if missing:
            raise InputError(
                f"model {self.name!r}: its adapter names modality {missing[0]!r}, which the dataset does not have "
                f"(it has: {', '.join(inputs)})"
            )
        seen = {k: self.preprocess[k](v) if k in self.preprocess else v for k, v in inputs.items() if k in wanted}
        if self.inputs is None:
            out = self.model(seen, present) if self._model_takes_present and present is not None else self.model(seen)
        elif isinstance(self.inputs, dict):
            out = self.model(**{keyword: seen[k] for k, keyword in self.inputs.items()})
        else:
            out = self.model(*(seen[k] for k in self.inputs))
        return self._select(out)

    def _select(self, out: object) -> object:
        if self.output is None:
            return out
        if isinstance(self.output, int):
            if not isinstance(out, (tuple, list)):
                raise InputError(f"model {self.name!r}: output = {self.output}, but it returned a {type(out).__name__}, not a tuple")
            if self.output >= len(out):
                raise InputError(
                    f"model {self.name!r}: output = {self.output}, but it returned a {type(out).__name__} of {len(out)} "
                    f"item(s); expected an index 0..{len(out) - 1}"
                )
            return out[self.output]
        if not isinstance(out, dict):
            raise InputError(f"model {self.name!r}: output = {self.output!r}, but it returned a {type(out).__name__}, not a dict")
        if self.output not in out:
            raise InputError(
                f"model {self.name!r}: output = {self.output!r}, but its dict holds {', '.join(map(repr, out)) or '(no keys)'}"
            )
        return out[self.output]


class ExportedModule(nn.Module):
    """A `torch.export` program's module inside an nn.Module the engine can move and set to eval.

    An exported program fixes its train/eval behaviour when it is exported, and its module
    refuses `.eval()` (torch: "Calling eval() is not supported yet"); so switching modes here
    changes only this wrapper's flag.
    """

    def __init__(self, program_module: nn.Module):
        super().__init__()
        self.program = program_module

    def forward(self, *args, **kwargs):
        return self.program(*args, **kwargs)

    def train(self, mode: bool = True) -> "ExportedModule":
        self.training = mode
        return self
