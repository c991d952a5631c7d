"""Optimizers over a model's parameters (PyTorch's update rules, argument names and layout).

Every optimizer takes either an iterable of parameters or an iterable of *parameter groups*
(dicts with a ``"params"`` entry and any hyper-parameters that differ from the defaults)::

    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)

``opt.param_groups`` is the list of groups (schedulers set each group's ``"lr"``), ``opt.state``
maps a parameter to its buffers, and ``state_dict()`` is PyTorch's layout:
``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}`` with parameters
numbered in group order. Submodules: :mod:`tapegrad.optim.lr_scheduler`,
:mod:`tapegrad.optim.swa_utils`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..autograd import bump_version
from ..tensor import Tensor

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "lr_scheduler",
    "swa_utils",
]

_NON_NEGATIVE = ("lr", "weight_decay", "momentum", "eps", "lr_decay", "dampening")


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``step``/``zero_grad``/state dicts.

    Parameters
    ----------
    params : iterable of Tensor, or iterable of dict
        The parameters to optimise, or parameter groups: dicts holding ``"params"`` (a Tensor
        or an iterable of them) and optional per-group hyper-parameters.
    defaults : dict
        Hyper-parameter defaults for groups that do not set them.

    Raises
    ------
    ValueError
        An empty parameter list, a parameter in two groups, a negative hyper-parameter.
    TypeError
        A parameter that is not a Tensor.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.step_count = 0
        if isinstance(params, Tensor):
            raise TypeError(
                f"{self._name}: params must be an iterable of Tensors or of dicts, got a Tensor"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{self._name}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    @property
    def _name(self) -> str:
        return type(self).__name__

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (a dict with ``"params"``) with its own hyper-parameters.

        Missing hyper-parameters take the optimizer's defaults. A parameter already in
        another group is a ValueError.
        """
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{self._name}.add_param_group: param_group must be a dict, "
                f"got {type(param_group).__name__}"
            )
        if "params" not in param_group:
            raise ValueError(f"{self._name}.add_param_group: the group has no 'params' entry")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{self._name}: got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{self._name}: parameter {i} of a group is a {type(p).__name__}, not a Tensor"
                )
            if p.dtype.kind != "f":
                raise TypeError(
                    f"{self._name}: can only optimise floating tensors, parameter {i} is {p.dtype}"
                )
        unknown = sorted(k for k in param_group if k != "params" and k not in self.defaults)
        if unknown:
            raise ValueError(
                f"{self._name}.add_param_group: unknown hyper-parameters {unknown}; this "
                f"optimizer takes {sorted(self.defaults)}"
            )
        group = {k: v for k, v in param_group.items() if k != "params"}
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError(
                f"{self._name}: some parameters appear in more than one parameter group "
                "(or twice in one)"
            )
        self.param_groups.append({"params": params, **group})

    def _check_group(self, group: dict[str, Any]) -> None:
        bad = {k: group[k] for k in _NON_NEGATIVE if k in group and not group[k] >= 0}
        if bad:
            raise ValueError(f"{self._name}: hyper-parameters must be non-negative, got {bad}")

    # --- compatibility views --------------------------------------------------------------
    @property
    def params(self) -> list[Tensor]:
        """Every parameter, in group order."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def lr(self) -> float:
        """The first group's learning rate; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        """Set every group's learning rate."""
        for g in self.param_groups:
            g["lr"] = value

    # --- stepping -------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient (``None``, or zeros with ``set_to_none=False``)."""
        for p in self.params:
            if set_to_none or p.grad_data is None:
                p.grad_data = None
            else:
                p.grad_data = np.zeros_like(p.data)

    def step(self, closure: Any = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            from ..autograd import enable_grad

            with enable_grad():
                loss = closure()
        self.step_count += 1
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad_data
                if g is None:
                    continue
                if group.get("maximize", False):
                    g = -g
                w = p.data
                st = self.state.setdefault(p, {})
                if not st:  # the parameter's first step: its buffers
                    if self._counts_steps:
                        st["step"] = 0
                    st.update(self._init_state(w, group))
                if self._counts_steps:
                    st["step"] += 1
                wd = group.get("weight_decay", 0)
                if wd and not self.decoupled:
                    g = g + wd * w  # L2 penalty: its gradient joins the loss's
                self._update(w, g, st, group)
                bump_version(p.data)  # a graph that saved this parameter is now stale
        return loss

    def _init_state(self, w: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        """The buffers of a parameter at its first step (``"step"`` is the loop's)."""
        return {}

    def _update(
        self, w: np.ndarray, g: np.ndarray, st: dict[str, Any], group: dict[str, Any]
    ) -> None:
        """Update ``w`` in place from gradient ``g`` (maximize and L2 weight decay already
        applied; ``st["step"]`` already counts this step) and the buffers in ``st``."""
        raise NotImplementedError

    # --- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """PyTorch's layout: ``{"state": {i: buffers}, "param_groups": [{..., "params": [i]}]}``.

        Parameters are numbered in group order; buffers are copied arrays, ``"step"`` an int.
        """
        index = {id(p): i for i, p in enumerate(self.params)}
        groups = []
        for g in self.param_groups:
            hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
            hyper["params"] = [index[id(p)] for p in g["params"]]
            groups.append(hyper)
        state = {
            index[id(p)]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
            for p, st in self.state.items()
            if id(p) in index
        }
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore buffers and hyper-parameters from :meth:`state_dict` (PyTorch's layout).

        The saved groups must hold as many parameters as this optimizer's, in the same order,
        and every buffer must have its parameter's shape; otherwise a ValueError and nothing
        changes. Files written by earlier tapegrad versions (``{"lr", "step_count", "state"}``)
        load too.
        """
        if "param_groups" not in state_dict:
            state_dict = self._from_old_layout(state_dict)
        saved = state_dict["param_groups"]
        name = f"{self._name}.load_state_dict"
        if len(saved) != len(self.param_groups):
            raise ValueError(
                f"{name}: the state has {len(saved)} parameter groups, "
                f"the optimizer {len(self.param_groups)}"
            )
        sizes = [len(g["params"]) for g in saved]
        own_sizes = [len(g["params"]) for g in self.param_groups]
        if sizes != own_sizes:
            raise ValueError(
                f"{name}: the state's groups hold {sizes} parameters, the optimizer's {own_sizes}"
            )
        by_index: dict[int, Tensor] = {}
        for sg, g in zip(saved, self.param_groups):
            for i, p in zip(sg["params"], g["params"]):
                by_index[int(i)] = p
        new_state: dict[Tensor, dict[str, Any]] = {}
        for key, st in state_dict["state"].items():
            try:
                p = by_index[int(key)]
            except (KeyError, ValueError):
                raise ValueError(
                    f"{name}: state for parameter {key!r}, which no group lists"
                ) from None
            bufs: dict[str, Any] = {}
            for k, v in st.items():
                if k == "step":
                    bufs[k] = int(np.asarray(v.data if isinstance(v, Tensor) else v))
                    continue
                arr = np.array(v.data if isinstance(v, Tensor) else v, dtype=p.dtype)
                if arr.shape != p.shape:
                    raise ValueError(
                        f"{name}: buffer {k!r} of parameter {key} has shape {arr.shape}, "
                        f"the parameter {p.shape}"
                    )
                bufs[k] = arr
            new_state[p] = bufs
        for sg, g in zip(saved, self.param_groups):
            for k, v in sg.items():
                if k != "params":
                    g[k] = tuple(v) if isinstance(g.get(k), tuple) else v
        self.state = new_state
        self.step_count = int(state_dict.get("step_count", self.step_count))

    def _from_old_layout(self, sd: dict[str, Any]) -> dict[str, Any]:
        """Convert the pre-parameter-group layout ``{"lr", "step_count", "state": [...]}``."""
        if "state" not in sd or not isinstance(sd["state"], (list, tuple)):
            raise ValueError(
                f"{self._name}.load_state_dict: expected 'state' and 'param_groups' entries, "
                f"got {sorted(sd)}"
            )
        params = self.params
        if len(sd["state"]) != len(params):
            raise ValueError(
                f"{self._name}.load_state_dict: state for "
                f"{len(sd['state'])} parameters, optimizer has {len(params)}"
            )
        step = int(sd.get("step_count", 0))
        state = {}
        for i, st in enumerate(sd["state"]):
            if st:
                st = dict(st)
                if self._counts_steps:
                    st["step"] = step
                state[i] = st
        groups, n = [], 0
        for g in self.param_groups:
            hyper = {k: v for k, v in g.items() if k != "params"}
            if "lr" in sd:
                hyper["lr"] = sd["lr"]
            hyper["params"] = list(range(n, n + len(g["params"])))
            n += len(g["params"])
            groups.append(hyper)
        return {"state": state, "param_groups": groups, "step_count": step}

    _counts_steps = True  # a "step" entry in each parameter's state
    decoupled = False  # weight decay shrinks the weights (AdamW) instead of adding to g


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening and Nesterov, as ``torch.optim.SGD``.

    ``g += weight_decay * w``; with momentum ``buf = momentum * buf + (1 - dampening) * g``
    (``buf = g`` at the first step) and the step is along ``buf`` (Nesterov:
    ``g + momentum * buf``); ``w -= lr * step``. State: ``momentum_buffer``.
    """

    _counts_steps = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        if not (lr >= 0 and momentum >= 0 and weight_decay >= 0):
            raise ValueError(
                f"SGD: lr, momentum and weight_decay must be non-negative, got "
                f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}"
            )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, w, g, st, group):
        momentum = group["momentum"]
        if momentum:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = np.array(g, dtype=w.dtype)
            else:
                buf *= momentum
                dampening = group["dampening"]
                # (1 - 0) * g is g: no temporary for the usual dampening of 0
                buf += (1 - dampening) * g if dampening else g
            g = g + momentum * buf if group["nesterov"] else buf
        w -= (group["lr"] * g).astype(w.dtype, copy=False)


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``): bias-corrected moment estimates, optional AMSGrad.

    ``weight_decay`` adds ``weight_decay * w`` to the gradient (L2); ``decoupled=True``
    shrinks the weights instead (AdamW). State: ``step``, ``exp_avg``, ``exp_avg_sq``
    (and ``max_exp_avg_sq`` with ``amsgrad``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled: bool = False,
    ) -> None:
        betas = tuple(betas)
        if len(betas) != 2 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{type(self).__name__}: betas must lie in [0, 1), got {betas}")
        self.decoupled = decoupled
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _init_state(self, w, group):
        """Zero first and second moments (and their running maximum with ``amsgrad``)."""
        st = {"exp_avg": np.zeros_like(w), "exp_avg_sq": np.zeros_like(w)}
        if group["amsgrad"]:
            st["max_exp_avg_sq"] = np.zeros_like(w)
        return st

    def _update(self, w, g, st, group):
        b1, b2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        if wd and self.decoupled:
            w *= 1 - lr * wd
        t = st["step"]
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        if group["amsgrad"]:
            vmax = st.setdefault("max_exp_avg_sq", np.zeros_like(w))
            np.maximum(vmax, v, out=vmax)
            v = vmax
        mhat = m / (1 - b1**t)
        vhat = v / (1 - b2**t)
        w -= (lr * mhat / (np.sqrt(vhat) + group["eps"])).astype(w.dtype, copy=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01), as ``torch.optim.AdamW``."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled=True
        )


class RMSprop(Optimizer):
    """RMSprop (``torch.optim.RMSprop``), optionally centred and with momentum.

    State: ``step``, ``square_avg`` (``grad_avg`` when centred, ``momentum_buffer`` with
    momentum).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        if not 0 <= alpha:
            raise ValueError(f"RMSprop: alpha must be non-negative, got {alpha}")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _init_state(self, w, group):
        """A zero running average of squared gradients."""
        return {"square_avg": np.zeros_like(w)}

    def _update(self, w, g, st, group):
        alpha = group["alpha"]
        sq = st["square_avg"]
        sq *= alpha
        sq += (1 - alpha) * g * g
        if group["centered"]:
            ga = st.setdefault("grad_avg", np.zeros_like(w))
            ga *= alpha
            ga += (1 - alpha) * g
            avg = np.sqrt(sq - ga * ga) + group["eps"]
        else:
            avg = np.sqrt(sq) + group["eps"]
        step = g / avg
        if group["momentum"]:
            buf = st.setdefault("momentum_buffer", np.zeros_like(w))
            buf *= group["momentum"]
            buf += step
            step = buf
        w -= (group["lr"] * step).astype(w.dtype, copy=False)


class Adagrad(Optimizer):
    """Adagrad (``torch.optim.Adagrad``): steps scaled by the root of summed squared gradients.

    ``clr = lr / (1 + (step - 1) * lr_decay)``, ``sum += g * g``,
    ``w -= clr * g / (sqrt(sum) + eps)``. State: ``step``, ``sum``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        if not initial_accumulator_value >= 0:
            raise ValueError(
                "Adagrad: initial_accumulator_value must be non-negative, got "
                f"{initial_accumulator_value}"
            )
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _init_state(self, w, group):
        """The sum of squared gradients, from ``initial_accumulator_value``."""
        return {"sum": np.full_like(w, group["initial_accumulator_value"])}

    def _update(self, w, g, st, group):
        clr = group["lr"] / (1 + (st["step"] - 1) * group["lr_decay"])
        acc = st["sum"]
        acc += g * g
        w -= (clr * g / (np.sqrt(acc) + group["eps"])).astype(w.dtype, copy=False)


class Adadelta(Optimizer):
    """Adadelta (``torch.optim.Adadelta``): steps scaled by running averages of squared
    gradients and squared updates.

    ``sq = rho * sq + (1 - rho) * g^2``, ``delta = sqrt(acc + eps) / sqrt(sq + eps) * g``,
    ``acc = rho * acc + (1 - rho) * delta^2``, ``w -= lr * delta``. State: ``step``,
    ``square_avg``, ``acc_delta``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        if not 0 <= rho <= 1:
            raise ValueError(f"Adadelta: rho must lie in [0, 1], got {rho}")
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _init_state(self, w, group):
        """Zero running averages of squared gradients and squared updates."""
        return {"square_avg": np.zeros_like(w), "acc_delta": np.zeros_like(w)}

    def _update(self, w, g, st, group):
        rho, eps = group["rho"], group["eps"]
        sq, acc = st["square_avg"], st["acc_delta"]
        sq *= rho
        sq += (1 - rho) * g * g
        delta = np.sqrt(acc + eps) / np.sqrt(sq + eps) * g
        acc *= rho
        acc += (1 - rho) * delta * delta
        w -= (group["lr"] * delta).astype(w.dtype, copy=False)


from . import lr_scheduler, swa_utils  # noqa: E402  (submodules need Optimizer defined)
