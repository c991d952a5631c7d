"""Module: parameters, buffers and submodules found by reflection over attributes.

State-dict keys are PyTorch's: dotted attribute paths (``features.3.bias``), buffers
beside parameters, so weights exported from ``torch.nn`` load here unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .. import autograd
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

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or None) under ``name``, as ``setattr`` does for a Parameter."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"{type(self).__name__}.register_parameter: {name!r} must be a Parameter or "
                f"None, got {type(param).__name__}"
            )
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` as a submodule under ``name`` (state-dict prefix ``name.``)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(
                f"{type(self).__name__}.add_module: {name!r} must be a Module, "
                f"got {type(module).__name__}"
            )
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(
                f"{type(self).__name__}.add_module: name must be a non-empty str without "
                f"'.', got {name!r}"
            )
        self._modules[name] = module
        object.__setattr__(self, name, module)

    # --- traversal ----------------------------------------------------------------------
    def named_modules(
        self, memo: set[int] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """``(dotted name, module)`` for this module and every submodule, depth first.

        A module reachable twice is listed once unless ``remove_duplicate=False``.
        """
        if isinstance(memo, str):  # the older call named_modules(prefix)
            memo, prefix = None, memo
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            sub = f"{prefix}.{name}" if prefix else name
            yield from m.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        """This module and every submodule (each once)."""
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """``(name, module)`` for the direct submodules."""
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        """The direct submodules."""
        for _, m in self.named_children():
            yield m

    def apply(self, fn: Any) -> Module:
        """Call ``fn(module)`` on every submodule (children first) and on this one; return self.

        The usual use is initialisation: ``model.apply(init_weights)``.
        """
        if not callable(fn):
            raise TypeError(f"{type(self).__name__}.apply: fn must be callable, got {fn!r}")
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` for every parameter (each once)."""
        seen: set[int] = set()
        mods = self.named_modules(None, prefix) if recurse else iter([(prefix, self)])
        for mname, m in mods:
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter (each once), in registration order."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, buffer)`` for every buffer (running statistics and the like)."""
        for mname, m in self.named_modules(None, prefix):
            for bname, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    def buffers(self) -> Iterator[Tensor]:
        """Every buffer."""
        for _, b in self.named_buffers():
            yield b

    # --- dtype, device and grad flags -------------------------------------------------------
    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` on every parameter (freeze with ``False``); return self."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def _cast(self, dtype: Any) -> Module:
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(
                f"{type(self).__name__}.to: only floating dtypes, got {dt} "
                "(parameters and floating buffers are cast)"
            )
        for t in [*self.parameters(), *self.buffers()]:
            if t.dtype.kind == "f" and t.dtype != dt:
                t.data = t.data.astype(dt)
                if t._grad is not None:
                    t._grad = t._grad.astype(dt)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(tensor)``, in place.

        Floating parameters and buffers (and their gradients) are cast to ``dtype``; integer
        buffers are left alone. tapegrad runs on the CPU: ``"cpu"`` is a no-op, any other
        device a ValueError. Returns self.
        """
        from ..device import _parse_to

        dtype = _parse_to(f"{type(self).__name__}.to", args, kwargs)
        return self if dtype is None else self._cast(dtype)

    def float(self) -> Module:
        """Cast floating parameters and buffers to float32; return self."""
        return self._cast(np.float32)

    def double(self) -> Module:
        """Cast floating parameters and buffers to float64; return self."""
        return self._cast(np.float64)

    def cpu(self) -> Module:
        """A no-op (tapegrad runs on the CPU); returns self."""
        return self

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

    def fuse(self, fold: bool = True, fuse: bool = True, serial_macs: int | None = None) -> Any:
        """The optimised inference version of this model: ``tapegrad.inference.optimize(self,
        fold, fuse, serial_macs)``.

        Batch norms are folded into the conv (``Conv1d``, ``Conv2d``, ``ConvTranspose1d``,
        ``ConvTranspose2d``, depthwise) or ``Linear`` layer before them, conv + bias + ReLU
        run as one step, dropout is gone, and no tape is recorded. The model is copied (in
        eval mode); this module is left as it is.

        Returns
        -------
        tapegrad.inference.InferenceModel
            Call it like the model: (N, ...) float input -> Tensor, equal to the eval
            forward within float rounding.
        """
        from ..inference import optimize

        return optimize(self, fold=fold, fuse=fuse, serial_macs=serial_macs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradient of every parameter: ``grad`` becomes None, or (with
        ``set_to_none=False``) zeros where there was a gradient, as PyTorch's."""
        for p in self.parameters():
            if set_to_none or p.grad_data is None:
                p.grad_data = None
            else:
                p.grad_data = np.zeros_like(p.data)

    # --- state --------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameters and buffers by dotted name, in registration order (arrays, copied)."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mname, m in self.named_modules(remove_duplicate=False):
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
        for mname, m in self.named_modules(remove_duplicate=False):
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
        hooks = self.__dict__.get("_module_hooks")
        if hooks is None:
            return self.forward(*args, **kwargs)
        return _call_with_hooks(self, hooks, args, kwargs)

    def _hook_store(self, kind: str) -> Any:
        hooks = self.__dict__.get("_module_hooks")
        if hooks is None:
            hooks = {k: autograd._HookDict() for k in ("pre", "fwd", "bwd")}
            object.__setattr__(self, "_module_hooks", hooks)
        return hooks[kind]

    def _add_hook(self, kind: str, hook: Any, fn: str) -> autograd.RemovableHandle:
        if not callable(hook):
            raise TypeError(f"{fn}: hook must be callable, got {type(hook).__name__}")
        store = self._hook_store(kind)
        key = next(autograd._hook_ids)
        store[key] = hook
        return autograd.RemovableHandle(store, key)

    def register_forward_pre_hook(self, hook: Any) -> autograd.RemovableHandle:
        """Call ``hook(module, args)`` before every forward; a returned value replaces the
        positional arguments (a tuple, or one value that becomes a 1-tuple).

        Returns
        -------
        RemovableHandle
            ``handle.remove()`` unregisters the hook.

        Raises
        ------
        TypeError
            If ``hook`` is not callable.
        """
        return self._add_hook("pre", hook, "register_forward_pre_hook")

    def register_forward_hook(self, hook: Any) -> autograd.RemovableHandle:
        """Call ``hook(module, args, output)`` after every forward; a returned value
        replaces the output.

        Returns
        -------
        RemovableHandle
            ``handle.remove()`` unregisters the hook.

        Raises
        ------
        TypeError
            If ``hook`` is not callable.
        """
        return self._add_hook("fwd", hook, "register_forward_hook")

    def register_full_backward_hook(self, hook: Any) -> autograd.RemovableHandle:
        """Call ``hook(module, grad_input, grad_output)`` when the gradients with respect to
        the module's inputs have been computed, as PyTorch's: ``grad_input`` holds one entry
        per positional Tensor argument (None where no gradient flows), ``grad_output`` one
        per Tensor output. A returned tuple replaces ``grad_input`` (supported for modules
        with one input that requires grad). Hooks are set up on calls made while grad is
        enabled.

        Returns
        -------
        RemovableHandle
            ``handle.remove()`` unregisters the hook.

        Raises
        ------
        TypeError
            If ``hook`` is not callable.
        """
        return self._add_hook("bwd", hook, "register_full_backward_hook")

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
    ``len``, indexing (a slice is a ``Sequential`` of those layers, their names kept) and
    iteration over them.
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __getitem__(self, i: int | slice) -> Module:
        if isinstance(i, slice):  # PyTorch: a Sequential of those layers, names kept
            out = Sequential()
            for name, layer in list(self._modules.items())[i]:
                setattr(out, name, layer)
            return out
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def forward(self, x: Any) -> Any:
        """Pass ``x`` through each layer in turn and return the last output.

        A ``Conv2d``, ``ConvTranspose2d`` or ``BatchNorm`` layer followed by a ``ReLU`` layer
        runs as one fused op (its ``forward_relu``: the same values and gradients, one pass
        and one tape record fewer), unless either layer has hooks or an op tracer (ONNX export,
        ``inference.optimize``) is reading the ops.
        """
        layers = tuple(self._modules.values())
        n = len(layers)
        fuse = n > 1 and autograd._state.tracer is None
        i = 0
        while i < n:
            layer = layers[i]
            if fuse and i + 1 < n and _fuses_with_relu(layer, layers[i + 1]):
                x = layer.forward_relu(x)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


def _plain(m: Module) -> bool:
    """No hooks, and no ``forward`` replaced on the instance (as tools that wrap it do)."""
    d = m.__dict__
    hooks = d.get("_module_hooks")
    return "forward" not in d and (hooks is None or not any(hooks.values()))


_FUSABLE: list[Any] = []


def _fuses_with_relu(layer: Module, nxt: Module) -> bool:
    """``layer`` then ``nxt`` can run as ``layer.forward_relu``: exactly a fusable layer
    class (not a subclass with its own forward) and exactly ReLU, neither with hooks or a
    ``forward`` replaced on the instance."""
    if not _FUSABLE:
        from .activation import ReLU
        from .conv import Conv2d, ConvTranspose2d
        from .norm import BatchNorm1d, BatchNorm2d

        _FUSABLE[:] = [(Conv2d, ConvTranspose2d, BatchNorm1d, BatchNorm2d), ReLU]
    return type(nxt) is _FUSABLE[1] and type(layer) in _FUSABLE[0] and _plain(layer) and _plain(nxt)


def relu_after(layer: Module, relu: Module, x: Any) -> Any:
    """``relu(layer(x))``, as one fused op (``layer.forward_relu``) when ``layer`` is a
    ``Conv2d``, ``ConvTranspose2d`` or ``BatchNorm`` layer and ``relu`` a ``ReLU`` layer,
    neither with hooks, and no op tracer is reading the ops; else the two calls. Models that
    call their layers by hand (residual blocks) use it as ``Sequential`` does."""
    if autograd._state.tracer is None and _fuses_with_relu(layer, relu):
        return layer.forward_relu(x)
    return relu(layer(x))


class ModuleList(Module):
    """A list of submodules, registered under ``"0"``, ``"1"``, ... (PyTorch's keys).

    Supports indexing (negative indices and slices), ``len``, iteration, ``append``,
    ``extend``, ``insert`` and ``del``. It has no ``forward``: call its items.
    """

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, i: int) -> int:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"ModuleList: indices must be int or slice, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"ModuleList: index {i} is out of range for {n} modules")
        return int(i) % n

    def __getitem__(self, i: Any) -> Any:
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return ModuleList(mods[i])
        return mods[self._index(i)]

    def __setitem__(self, i: int, module: Module) -> None:
        self.add_module(str(self._index(i)), module)

    def __delitem__(self, i: Any) -> None:
        mods = list(self._modules.values())
        if isinstance(i, slice):
            del mods[i]
        else:
            del mods[self._index(i)]
        self._renumber(mods)

    def _renumber(self, mods: list[Module]) -> None:
        for k in list(self._modules):
            self._modules.pop(k)
            object.__delattr__(self, k)
        for j, m in enumerate(mods):
            self.add_module(str(j), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        """Add ``module`` at the end; return self."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append every module of ``modules``; return self."""
        if isinstance(modules, Module) and not isinstance(modules, ModuleList):
            raise TypeError("ModuleList.extend: give an iterable of Modules, got one Module")
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert ``module`` before ``index``."""
        mods = list(self._modules.values())
        mods.insert(index, module)
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.insert: expected a Module, got {type(module).__name__}")
        self._renumber(mods)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Not defined for a container: call its items."""
        raise NotImplementedError("ModuleList has no forward: iterate over it and call its items")


class ModuleDict(Module):
    """An ordered dict of submodules, registered under their keys (PyTorch's keys).

    Supports ``d[key]``, ``d[key] = m``, ``del d[key]``, ``in``, ``len``, iteration over
    keys, ``keys()``, ``values()``, ``items()``, ``update()``, ``pop()`` and ``clear()``.
    """

    def __init__(self, modules: Any = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        if key not in self._modules:
            raise KeyError(f"ModuleDict: no module {key!r}; keys are {list(self._modules)}")
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        self[key]  # noqa: B018  (the KeyError names the keys)
        del self._modules[key]
        object.__delattr__(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def keys(self) -> list[str]:
        """The keys, in insertion order."""
        return list(self._modules)

    def values(self) -> list[Module]:
        """The modules, in insertion order."""
        return list(self._modules.values())

    def items(self) -> list[tuple[str, Module]]:
        """``(key, module)`` pairs, in insertion order."""
        return list(self._modules.items())

    def update(self, modules: Any) -> None:
        """Add (or replace) modules from a mapping or an iterable of ``(key, module)``."""
        pairs = modules.items() if hasattr(modules, "items") else modules
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(
                    f"ModuleDict.update: expected (key, module) pairs, got {type(pair).__name__}"
                )
            self[pair[0]] = pair[1]

    def pop(self, key: str) -> Module:
        """Remove ``key`` and return its module."""
        m = self[key]
        del self[key]
        return m

    def clear(self) -> None:
        """Remove every module."""
        for k in list(self._modules):
            del self[k]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Not defined for a container: call its items."""
        raise NotImplementedError("ModuleDict has no forward: look modules up and call them")


# --- module hooks ------------------------------------------------------------------------


def _call_with_hooks(module: Module, hooks: dict, args: tuple, kwargs: dict) -> Any:
    """``module(*args, **kwargs)`` with its forward-pre, forward and full backward hooks."""
    for h in list(hooks["pre"].values()):
        r = h(module, args)
        if r is not None:
            args = r if isinstance(r, tuple) else (r,)
    state = None
    if hooks["bwd"] and autograd.is_grad_enabled():
        state = _BackwardHookState(module, hooks["bwd"])
        args = state.wrap_inputs(args)
    out = module.forward(*args, **kwargs)
    for h in list(hooks["fwd"].values()):
        r = h(module, args, out)
        if r is not None:
            out = r
    if state is not None:
        out = state.wrap_outputs(out)
    return out


class _BackwardHookState:
    """One call's full backward hook bookkeeping: identity records on the Tensor inputs and
    outputs collect ``grad_output`` and ``grad_input``; the input record made first (run
    last by backward) calls the hooks."""

    def __init__(self, module: Module, hooks: dict) -> None:
        self.module, self.hooks = module, hooks
        self.n_in = 0
        self.wrapped: list[int] = []
        self.grad_in: list[Any] = []
        self.grad_out: list[Any] = []
        self.out_wrapped: list[int] = []

    def wrap_inputs(self, args: tuple) -> tuple:
        out = []
        for a in args:
            if isinstance(a, Tensor):
                slot = self.n_in
                self.n_in += 1
                if a.requires_grad:
                    self.wrapped.append(slot)
                    a = _HookIdentity.apply(a, state=self, slot=slot, side="in")
            out.append(a)
        self.grad_in = [None] * self.n_in
        return tuple(out)

    def wrap_outputs(self, out: Any) -> Any:
        single = isinstance(out, Tensor)
        items = [out] if single else (list(out) if isinstance(out, (tuple, list)) else None)
        if items is None:
            return out
        tensors = [i for i, t in enumerate(items) if isinstance(t, Tensor)]
        self.grad_out = [None] * len(tensors)
        for j, i in enumerate(tensors):
            if items[i].requires_grad:
                self.out_wrapped.append(j)
                items[i] = _HookIdentity.apply(items[i], state=self, slot=j, side="out")
        if single:
            return items[0]
        return type(out)(items) if isinstance(out, tuple) else items

    def arrived(self, side: str, slot: int, g: Any) -> Any:
        if side == "out":
            self.grad_out[slot] = g
            if self.wrapped or slot != min(self.out_wrapped):
                return g
            self.fire()  # no input takes a gradient: call the hooks once the outputs are in
            return g
        self.grad_in[slot] = g
        if slot != self.wrapped[0]:
            return g
        new = self.fire()
        if new is not None:
            return new[slot]
        return g

    def fire(self) -> tuple | None:
        replaced = None
        for h in list(self.hooks.values()):
            gin = tuple(_as_tensor(g) for g in (replaced or self.grad_in))
            r = h(self.module, gin, tuple(_as_tensor(g) for g in self.grad_out))
            if r is None:
                continue
            r = tuple(r) if isinstance(r, (tuple, list)) else (r,)
            if len(r) != self.n_in:
                raise RuntimeError(
                    f"{type(self.module).__name__} full backward hook returned {len(r)} "
                    f"gradients for {self.n_in} inputs"
                )
            if len(self.wrapped) > 1:
                raise RuntimeError(
                    f"{type(self.module).__name__} full backward hook: replacing grad_input "
                    f"is supported for modules with one input that requires grad, this call "
                    f"had {len(self.wrapped)}"
                )
            replaced = list(r)
        if replaced is None:
            return None
        return tuple(
            None if g is None else (g.data if isinstance(g, Tensor) else g) for g in replaced
        )


def _as_tensor(g: Any) -> Any:
    if g is None or isinstance(g, Tensor):
        return g
    return Tensor._from_op(g)


class _HookIdentity(autograd.Function):
    """Identity whose backward hands the gradient to a :class:`_BackwardHookState`."""

    @staticmethod
    def forward(ctx: autograd.Context, x: Any, state: Any = None, slot: int = 0, side: str = "in"):
        ctx.state, ctx.slot, ctx.side = state, slot, side
        return x

    @staticmethod
    def backward(ctx: autograd.Context, g: Any) -> Any:
        return ctx.state.arrived(ctx.side, ctx.slot, g)

    @staticmethod
    def backward_graph(ctx: autograd.Context, g: Any, inputs: list) -> Any:
        r = ctx.state.arrived(ctx.side, ctx.slot, g)
        return r
