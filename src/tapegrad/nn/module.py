"""Module: parameters, buffers and submodules found by reflection over attributes.

State-dict keys are PyTorch's: dotted attribute paths (``features.3.bias``), buffers
beside parameters, so weights exported from ``torch.nn`` load here unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (requires grad by default)."""

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data, requires_grad=requires_grad)


class Module:
    """Base class of layers and models: parameters, buffers and submodules by reflection.

    Assigning a :class:`Parameter` or a ``Module`` to an attribute registers it (call
    ``super().__init__()`` first); :meth:`register_buffer` registers state that is saved but
    not trained. :meth:`state_dict` keys are dotted attribute paths, the same as PyTorch's
    for the same network. Subclasses define :meth:`forward`; calling the module calls it.

    Examples
    --------
    >>> import tapegrad.nn as nn
    >>> class MLP(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)
    ...     def forward(self, x):
    ...         return self.fc2(self.fc1(x).relu())
    >>> [k for k in MLP().state_dict()]
    ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() first")
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Tensor | None) -> None:
        """A tensor that is state (saved, loaded) but not trained: running statistics."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def __setstate__(self, state: dict) -> None:  # pragma: no cover - copy support
        self.__dict__.update(state)

    # --- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted name, module)`` for this module (name ``prefix``) and every submodule,
        depth first in registration order.
        """
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """Yield this module and every submodule, depth first."""
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        """Yield the direct submodules in registration order."""
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted name, Parameter)`` for every parameter, each shared one once.

        Parameters
        ----------
        prefix : str, default ""
            Prepended (with a dot) to every name.
        """
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> Iterator[Parameter]:
        """Yield every parameter once (what an optimiser takes)."""
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        """Yield ``(dotted name, Tensor)`` for every registered buffer that is not None."""
        for mname, m in self.named_modules():
            for bname, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    # --- modes --------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) or evaluation mode on this module and every submodule.

        Training mode matters to batch norm (batch statistics and running-average updates) and
        dropout (active). Returns this module.
        """
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``. Returns this module."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Clear the gradient of every parameter (set ``grad`` to None)."""
        for p in self.parameters():
            p.grad = None

    # --- state --------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameters and buffers by dotted name, in registration order (arrays, copied)."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mname, m in self.named_modules():
            for store in (m._parameters, m._buffers):
                for k, v in store.items():
                    if v is not None:
                        out[f"{mname}.{k}" if mname else k] = v.data.copy()
        return out

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays in by name; shapes must match. ``strict`` also demands the same keys."""
        own = dict(self._state_tensors())
        cls = type(self).__name__
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"{cls}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        # check every shape before copying anything: a mismatch leaves the model untouched
        arrays = {}
        for k, t in own.items():
            if k not in state:
                continue
            v = state[k]
            arr = np.asarray(v.data if isinstance(v, Tensor) else v)
            if arr.shape != t.shape:
                raise ValueError(
                    f"{cls}.load_state_dict: tensor {k!r} has shape {arr.shape} "
                    f"in the state dict but {t.shape} in the model"
                )
            arrays[k] = arr
        for k, arr in arrays.items():
            own[k].data[...] = arr.astype(own[k].dtype, copy=False)

    def _state_tensors(self) -> Iterator[tuple[str, Tensor]]:
        for mname, m in self.named_modules():
            for store in (m._parameters, m._buffers):
                for k, v in store.items():
                    if v is not None:
                        yield (f"{mname}.{k}" if mname else k), v

    # --- calling ------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; subclasses override it. ``module(x)`` calls it.

        Raises
        ------
        NotImplementedError
            If the subclass does not define it.
        """
        raise NotImplementedError(f"{type(self).__name__}.forward is not defined")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        """Text shown inside the parentheses of the module's repr; layers override it."""
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


class Sequential(Module):
    """Layers applied in order: ``Sequential(nn.Conv2d(1, 6, 5), nn.ReLU())``.

    The layers are registered as submodules named ``"0"``, ``"1"``, ...; the object supports
    ``len``, indexing and iteration over them.
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def forward(self, x: Any) -> Any:
        """Pass ``x`` through each layer in turn and return the last output."""
        for layer in self._modules.values():
            x = layer(x)
        return x
