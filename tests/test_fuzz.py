"""Property-based fuzzing of every public op over random shapes and arguments.

Each strategy draws shapes and arguments from ranges that deliberately run past the
valid ones (zero or negative strides, groups that do not divide, kernels larger than
the input, probabilities outside [0, 1] ...). For every drawn call:

* if the ``reference`` variant rejects it, the error is a ValueError/TypeError whose
  message starts with the public function's name, and every other variant raises the
  very same error (arguments are checked before any kernel runs);
* otherwise every registered variant's forward output, input gradients (and in-place
  side effects such as running statistics) agree with ``reference`` to dtype tolerance.

Ops without kernel variants (linear, activations, losses) are compared with PyTorch.

Two profiles: ``short`` (the default run, 20 examples per op, derandomised) and ``long``
(``-m slow``, 400 examples per op, random). ``TAPEGRAD_FUZZ_EXAMPLES`` overrides the
long profile's count.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.nn.functional as F

PROFILES = {
    "short": dict(
        max_examples=int(os.environ.get("TAPEGRAD_FUZZ_SHORT_EXAMPLES", "20")), derandomize=True
    ),
    # random (not derandomised): every long run explores new examples
    "long": dict(
        max_examples=int(os.environ.get("TAPEGRAD_FUZZ_EXAMPLES", "400")), derandomize=False
    ),
}
PROFILE_PARAMS = [
    pytest.param("short", id="short"),
    pytest.param("long", id="long", marks=pytest.mark.slow),
]
# only variants of this backend besides reference ("cython" in the bounds-checked build run)
BACKEND = os.environ.get("TAPEGRAD_FUZZ_BACKEND", "")
EXAMPLES: Counter = Counter()  # (op, profile, outcome) -> examples run; printed at the end

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


def _run_profile(profile: str, strategy, prop: Callable, most: int | None = None) -> None:
    cfg = dict(PROFILES[profile])
    if most is not None and profile == "short":
        cfg["max_examples"] = min(cfg["max_examples"], most)
    settings(
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        **cfg,
    )(given(strategy)(prop))()


def _leaves(arrays: list[np.ndarray | None]) -> list[tg.Tensor | None]:
    return [None if a is None else tg.tensor(a.copy(), requires_grad=True) for a in arrays]


def _run(fn, arrays, choice: dict[str, str], seed: int | None, state: list | None):
    """Forward + backward under one kernel choice; returns output, grads, side state."""
    ts = _leaves(arrays)
    st_copy = None if state is None else [None if s is None else s.copy() for s in state]
    if seed is not None:
        tg.manual_seed(seed)
    with tg.kernels.use(**choice):
        y = fn(*ts, state=st_copy)
        proj = np.random.default_rng(99).standard_normal(y.shape).astype(y.dtype)
        if any(t is not None for t in ts):
            y.backward(proj)
    grads = [None if t is None or t.grad is None else t.grad.data for t in ts]
    return y.data, grads, st_copy


def _close(a, b, dtype, what: str, mult: float = 1.0) -> None:
    if a is None or b is None:
        assert a is None and b is None, what
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    scale = mult * max(1.0, float(np.max(np.abs(b), initial=0.0)))
    tol = TOL[dtype]
    np.testing.assert_allclose(a, b, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


def check_variants(
    ops: list[str],
    public: str,
    fn: Callable,
    arrays: list,
    dtype,
    profile: str,
    seed: int | None = None,
    state: list | None = None,
    grad_mult: float = 1.0,
) -> None:
    """Reference first; then every other variant of each kernel op in ``ops``.

    ``grad_mult`` widens the gradient tolerance where the op amplifies rounding (a norm
    over groups of one element multiplies it by 1/sqrt(eps)).
    """
    ref_choice = {op: "reference" for op in ops}
    try:
        ref = _run(fn, arrays, ref_choice, seed, state)
        ref_err = None
    except (ValueError, TypeError) as e:
        ref_err = e
    EXAMPLES[(public, profile, "rejected" if ref_err else "accepted")] += 1
    if ref_err is not None:
        assert str(ref_err).startswith(public), f"error does not name {public}: {ref_err}"
        if os.environ.get("TAPEGRAD_FUZZ_SHOW_ERRORS"):
            print("rejected:", ref_err)
    for op in ops:
        for v in tg.kernels.variants(op):
            if v == "reference" or (BACKEND and not v.endswith("-" + BACKEND)):
                continue
            choice = {**ref_choice, op: v}
            if ref_err is not None:
                with pytest.raises(type(ref_err)) as info:
                    _run(fn, arrays, choice, seed, state)
                assert str(info.value) == str(ref_err)
                continue
            y, grads, st_out = _run(fn, arrays, choice, seed, state)
            _close(y, ref[0], dtype, f"{public} {v} output")
            for i, (g, rg) in enumerate(zip(grads, ref[1])):
                _close(g, rg, dtype, f"{public} {v} grad {i}", grad_mult)
            for i, (s, rs) in enumerate(zip(st_out or [], ref[2] or [])):
                _close(s, rs, dtype, f"{public} {v} state {i}")


# --- strategies --------------------------------------------------------------------------

dtypes = st.sampled_from([np.float32, np.float64])


def _arr(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _images(draw, dtype, side: int) -> np.ndarray:
    """A seeded (N, C, H, W) batch in ``dtype``: 1-2 images of 1-3 channels, each side
    1..``side``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return _arr(rng, (n, c, draw(st.integers(1, side)), draw(st.integers(1, side))), dtype)


def _breaking(draw, options: list[str]) -> str | None:
    """None (a valid call) three times in four, else the name of one argument to break.

    Drawn through a seeded generator: hypothesis's own choice heuristics favour the
    later options, which would starve the kernels of valid calls.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return options[rng.integers(len(options))] if rng.random() < 0.25 else None


@st.composite
def conv_cases(draw, nd: int, transpose: bool):
    """conv{1,2}d / conv_transpose{1,2}d arguments: mostly valid, one in four broken."""
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    bad = _breaking(
        draw,
        ["groups", "channels", "stride", "padding", "dilation", "kernel", "bias", "rank", "dtype"]
        + (["output_padding"] if transpose else []),
    )
    n = draw(st.integers(1, 2))
    g = draw(st.integers(1, 3))
    cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    span = [d * (k - 1) for d, k in zip(dilation, kernel)]
    if transpose:
        padding = tuple(draw(st.integers(0, sp // 2)) for sp in span)
        spatial = tuple(draw(st.integers(1, 6)) for _ in range(nd))
    else:
        padding = tuple(draw(st.integers(0, 2)) for _ in range(nd))
        spatial = tuple(
            draw(st.integers(max(1, sp + 1 - 2 * pd), sp + 7)) for sp, pd in zip(span, padding)
        )
    kw: dict = dict(
        stride=stride if draw(st.booleans()) else stride[0] if len(set(stride)) == 1 else stride,
        padding=padding,
        dilation=dilation,
        groups=g,
    )
    if transpose:
        kw["output_padding"] = tuple(
            draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)
        )
    elif draw(st.integers(0, 4)) == 0:
        kw["padding"] = draw(st.sampled_from(["same", "valid"]))
        if kw["padding"] == "same":
            kw["stride"] = 1
        else:
            spatial = tuple(max(n_, sp + 1) for n_, sp in zip(spatial, span))
    if transpose:
        wshape = [cin, cout // g, *kernel]
    else:
        wshape = [cout, cin // g, *kernel]
    bshape = (cout,)
    xshape = [n, cin, *spatial]
    xdtype = dtype
    if bad == "groups":
        kw["groups"] = draw(st.sampled_from([0, -1, g + 1 if cin % (g + 1) else g + 2, True]))
    elif bad == "channels":
        wshape[0 if transpose else 1] += 1
    elif bad == "stride":
        kw["stride"] = draw(st.sampled_from([0, -1, 1.5, (1,) * (nd + 1), "1"]))
    elif bad == "padding":
        kw["padding"] = draw(st.sampled_from([-1, (0,) * (nd + 1), "full", 0.5]))
    elif bad == "dilation":
        kw["dilation"] = draw(st.sampled_from([0, -2, (1,) * (nd + 1)]))
    elif bad == "kernel":
        if transpose:
            kw["padding"] = tuple(sp + 3 + 2 * (s - 1) * 6 for sp, s in zip(span, stride))
        else:
            wshape[2:] = [sz + 2 * pd + 1 for sz, pd in zip(spatial, padding)]
            kw["dilation"] = 1
    elif bad == "bias":
        bshape = (cout + 1,)
    elif bad == "rank":
        xshape = xshape[1:] if draw(st.booleans()) else xshape + [2]
    elif bad == "dtype":
        xdtype = np.float64 if dtype == np.float32 else np.float32
    elif bad == "output_padding":
        kw["output_padding"] = tuple(max(s, d) for s, d in zip(stride, dilation))
    x = _arr(rng, tuple(xshape), xdtype)
    w = _arr(rng, tuple(wshape), dtype)
    b = _arr(rng, bshape, dtype) if draw(st.booleans()) or bad == "bias" else None
    return dtype, [x, w, b], kw


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
@pytest.mark.parametrize("nd", [1, 2])
def test_fuzz_conv(profile, nd):
    public = f"conv{nd}d"
    f = getattr(F, public)

    def prop(case):
        dtype, arrays, kw = case
        check_variants(
            ["conv2d", "depthwise_conv2d"],
            public,
            lambda x, w, b, state: f(x, w, b, **kw),
            arrays,
            dtype,
            profile,
        )

    _run_profile(profile, conv_cases(nd, False), prop)


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
@pytest.mark.parametrize("nd", [1, 2])
def test_fuzz_conv_transpose(profile, nd):
    public = f"conv_transpose{nd}d"
    f = getattr(F, public)

    def prop(case):
        dtype, arrays, kw = case
        check_variants(
            ["conv_transpose2d"],
            public,
            lambda x, w, b, state: f(x, w, b, **kw),
            arrays,
            dtype,
            profile,
        )

    _run_profile(profile, conv_cases(nd, True), prop)


@st.composite
def depthwise_cases(draw):
    """groups == in_channels: the depthwise kernels (every variant) get most draws."""
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    c = draw(st.integers(1, 4))
    mult = draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    x = _arr(
        rng, (draw(st.integers(1, 2)), c, draw(st.integers(1, 8)), draw(st.integers(1, 8))), dtype
    )
    w = _arr(rng, (c * mult, 1, *k), dtype)
    b = _arr(rng, (c * mult,), dtype) if draw(st.booleans()) else None
    kw = dict(
        stride=draw(st.integers(1, 3)),
        padding=draw(st.integers(0, 2)),
        dilation=draw(st.integers(1, 2)),
        groups=c,
    )
    return dtype, [x, w, b], kw


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
def test_fuzz_depthwise(profile):
    def prop(case):
        dtype, arrays, kw = case
        check_variants(
            ["depthwise_conv2d", "conv2d"],
            "conv2d",
            lambda x, w, b, state: F.conv2d(x, w, b, **kw),
            arrays,
            dtype,
            profile,
        )

    _run_profile(profile, depthwise_cases(), prop)


@st.composite
def pool_cases(draw, avg: bool = False):
    """max_pool2d / avg_pool2d arguments: mostly valid, one in four broken."""
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    bad = _breaking(
        draw, ["kernel_size", "stride", "padding", "rank", "size"] + ([] if avg else ["dilation"])
    )
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dil = (1, 1) if avg else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    hw = tuple(
        draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), d * (k - 1) + 8))
        for k, d, p in zip(kernel, dil, pad)
    )
    shape = [draw(st.integers(1, 2)), draw(st.integers(1, 3)), *hw]
    kw: dict = dict(
        kernel_size=kernel if draw(st.booleans()) or kernel[0] != kernel[1] else kernel[0],
        stride=draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * 2))),
        padding=pad,
        ceil_mode=draw(st.booleans()),
    )
    if avg:
        kw["count_include_pad"] = draw(st.booleans())
    else:
        kw["dilation"] = dil
    if bad == "kernel_size":
        kw["kernel_size"] = draw(st.sampled_from([0, -1, (2, 2, 2), 2.0, None]))
    elif bad == "stride":
        kw["stride"] = draw(st.sampled_from([0, -1, (1, 0), 1.5]))
    elif bad == "padding":
        kw["padding"] = draw(st.sampled_from([-1, (max(kernel) // 2 + 1,) * 2, "same"]))
    elif bad == "dilation":
        kw["dilation"] = draw(st.sampled_from([0, (1, -1)]))
    elif bad == "rank":
        shape = shape[1:] if draw(st.booleans()) else shape + [1]
    elif bad == "size":
        kw.update(kernel_size=9, stride=1, padding=0)
        shape[2:] = [draw(st.integers(1, 8)), draw(st.integers(1, 8))]
        if not avg:
            kw["dilation"] = 1
    x = _arr(rng, tuple(shape), dtype)
    return dtype, [x], kw


@st.composite
def adaptive_cases(draw):
    dtype = draw(dtypes)
    x = _images(draw, dtype, 9)
    size = draw(
        st.one_of(
            st.integers(1, 10),
            st.tuples(st.integers(1, 10), st.integers(1, 10)),
            st.tuples(st.none(), st.integers(1, 4)),
        )
    )
    if _breaking(draw, ["size"]):
        size = draw(st.sampled_from([0, -1, (0, 2), (1, 2, 3), 2.5, "2"]))
    return dtype, [x], {"output_size": size}


@st.composite
def upsample_cases(draw):
    dtype = draw(dtypes)
    x = _images(draw, dtype, 7)
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    kw: dict = {"mode": mode}
    if mode == "bilinear":
        kw["align_corners"] = draw(st.sampled_from([None, False, True]))
    if draw(st.booleans()):
        kw["size"] = draw(st.one_of(st.integers(1, 12), st.tuples(*[st.integers(1, 12)] * 2)))
    else:
        factor = st.floats(0.3, 3.0).map(lambda f: round(f, 2))
        kw["scale_factor"] = draw(st.one_of(factor, st.tuples(factor, factor)))
        kw["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
    bad = _breaking(draw, ["size", "scale_factor", "mode", "align_corners"])
    if bad:
        kw[bad] = draw(
            {
                "size": st.sampled_from([0, (2, 0), (1, 2, 3), 2.5]),
                "scale_factor": st.sampled_from([0.0, -1.0, 0.01, "2"]),
                "mode": st.sampled_from(["area", "bicubic", None]),
                "align_corners": st.sampled_from([True, 1]),
            }[bad]
        )
        if bad == "align_corners":
            kw["mode"] = draw(st.sampled_from(["nearest", "bilinear"]))
    return dtype, [x], kw


# the one-input kernel ops with a strategy of their own: (kernel op, public function, cases)
ONE_INPUT = [
    ("max_pool2d", "max_pool2d", pool_cases),
    ("avg_pool2d", "avg_pool2d", lambda: pool_cases(avg=True)),
    ("adaptive_avg_pool2d", "adaptive_avg_pool2d", adaptive_cases),
    ("upsample2d", "interpolate", upsample_cases),
]


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
@pytest.mark.parametrize("op,public,cases", ONE_INPUT, ids=[c[0] for c in ONE_INPUT])
def test_fuzz_one_input_op(profile, op, public, cases):
    f = getattr(F, public)

    def prop(case):
        dtype, arrays, kw = case
        check_variants([op], public, lambda x, state: f(x, **kw), arrays, dtype, profile)

    _run_profile(profile, cases(), prop)


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
def test_fuzz_philox_streams(profile):
    """The raw generator: every variant gives the reference's bits, masks and normals."""
    cases = st.tuples(
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        st.integers(0, 1100),
        st.sampled_from([0.0, 2.0**-32, 0.1, 0.5, 0.9999, 1.0]),
    )

    def prop(case):
        seed, step, n, p = case
        ref = tg.kernels.get("philox", "reference")
        want = (ref.random_bits(seed, step, n), ref.bernoulli_keep(seed, step, n, p))
        want_n = ref.normal(seed, step, n)
        EXAMPLES[("philox", profile, "accepted")] += 1
        for v in tg.kernels.variants("philox"):
            if v == "reference" or (BACKEND and not v.endswith("-" + BACKEND)):
                continue
            mod = tg.kernels.get("philox", v)
            np.testing.assert_array_equal(mod.random_bits(seed, step, n), want[0], err_msg=v)
            np.testing.assert_array_equal(mod.bernoulli_keep(seed, step, n, p), want[1], err_msg=v)
            np.testing.assert_allclose(mod.normal(seed, step, n), want_n, rtol=1e-12, atol=1e-12)

    _run_profile(profile, cases, prop)


@st.composite
def batch_norm_cases(draw):
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    bad = _breaking(draw, ["weight", "momentum", "eps", "stats", "single", "rank"])
    c = draw(st.integers(1, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
    n = draw(st.integers(2, 3))
    if bad == "single":
        n, spatial = 1, (1,) * len(spatial)
    if bad == "rank":
        shape = (c,)
    else:
        shape = (n, c, *spatial)
    x = _arr(rng, shape, dtype) * draw(st.sampled_from([1.0, 100.0]))
    x = x + draw(st.sampled_from([0.0, 50.0]))
    w = (
        _arr(rng, (c + (bad == "weight"),), dtype)
        if draw(st.booleans()) or bad == "weight"
        else None
    )
    b = _arr(rng, (c,), dtype) if draw(st.booleans()) else None
    stats = draw(st.booleans()) or bad == "stats"
    state = [_arr(rng, (c,), dtype), np.abs(_arr(rng, (c,), dtype)) + 0.5] if stats else None
    if bad == "stats":
        state[draw(st.integers(0, 1))] = _arr(rng, (c + 1,), dtype)
    kw = dict(
        training=draw(st.booleans()) or bad == "single",
        momentum=draw(st.sampled_from([0.0, 0.1, 1.0])) if bad != "momentum" else 1.5,
        eps=draw(st.sampled_from([1e-5, 1e-3])) if bad != "eps" else -1.0,
        normalize_variance=draw(st.booleans()),
    )
    if not kw["training"] and state is None:
        kw["training"] = True  # eval needs running statistics
    return dtype, [x.astype(dtype), w, b], kw, state


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
def test_fuzz_batch_norm(profile):
    def prop(case):
        dtype, arrays, kw, state = case

        def fn(x, w, b, state):
            rm, rv = (None, None) if state is None else state
            return F.batch_norm(x, rm, rv, w, b, **kw)

        check_variants(["batch_norm"], "batch_norm", fn, arrays, dtype, profile, state=state)

    _run_profile(profile, batch_norm_cases(), prop)


@st.composite
def row_norm_cases(draw, group: bool):
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    bad = _breaking(draw, ["arg", "weight", "eps"])
    if group:
        groups = draw(st.integers(1, 3))
        c = groups * draw(st.integers(1, 2))
        shape = (draw(st.integers(1, 3)), c, *draw(st.lists(st.integers(1, 4), max_size=2)))
        arg = groups if bad != "arg" else draw(st.sampled_from([0, c + 1, 1.5]))
        pshape = (c + (bad == "weight"),)
    else:
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
        k = draw(st.integers(1, len(shape)))
        norm = shape[len(shape) - k :]
        pshape = tuple(s + (bad == "weight") for s in norm)
        arg = norm if len(norm) != 1 or draw(st.booleans()) else norm[0]
        if bad == "arg":
            arg = draw(
                st.sampled_from([tuple(s + 1 for s in norm), (), -1, (0,) * (len(shape) + 1)])
            )
    x = _arr(rng, shape, dtype) * draw(st.sampled_from([1.0, 1e3]))
    w = _arr(rng, pshape, dtype) if draw(st.booleans()) or bad == "weight" else None
    b = _arr(rng, pshape, dtype) if draw(st.booleans()) else None
    eps = draw(st.sampled_from([1e-5, 1e-2])) if bad != "eps" else -1.0
    return dtype, [x.astype(dtype), w, b], arg, eps


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
@pytest.mark.parametrize("which", ["layer_norm", "group_norm"])
def test_fuzz_row_norms(profile, which):
    f = getattr(F, which)

    def prop(case):
        dtype, arrays, arg, eps = case
        x = arrays[0]
        if which == "group_norm":
            size = x.size // max(x.shape[0] * max(arg, 1), 1)
        else:
            size = int(np.prod(arg))
        check_variants(
            [which],
            which,
            lambda x, w, b, state: f(x, arg, w, b, eps=eps),
            arrays,
            dtype,
            profile,
            grad_mult=1 / np.sqrt(eps) if size <= 1 and eps > 0 else 1.0,
        )

    _run_profile(profile, row_norm_cases(which == "group_norm"), prop)


@st.composite
def dropout_cases(draw, which: str):
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    bad = _breaking(draw, ["p", "rank"] if which == "dropout2d" else ["p"])
    if which == "dropout2d":
        rank = draw(st.sampled_from([3, 4])) if bad != "rank" else draw(st.sampled_from([1, 2, 5]))
        shape = tuple(draw(st.integers(1, 6)) for _ in range(rank))
    else:
        shape = tuple(draw(st.lists(st.integers(1, 6), max_size=5)))
    x = _arr(rng, shape, dtype)
    if which == "gaussian_dropout":
        sigma = draw(st.sampled_from([0.0, 0.3, 1.0]))
        kw = dict(sigma=sigma if bad != "p" else draw(st.sampled_from([-0.5, float("nan")])))
    else:
        p = draw(st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0]))
        if bad == "p":
            p = draw(st.sampled_from([-0.1, 1.5, float("nan"), "0.5"]))
        kw = dict(p=p, scale=draw(st.booleans()))
    kw["training"] = draw(st.integers(0, 4)) > 0
    return dtype, [x], kw, draw(st.integers(0, 2**31 - 1))


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
@pytest.mark.parametrize("which", ["dropout", "dropout2d", "gaussian_dropout"])
def test_fuzz_dropout(profile, which):
    f = getattr(F, which)

    def prop(case):
        dtype, arrays, kw, seed = case
        check_variants(
            [which],
            which,
            lambda x, state: f(x, **kw),
            arrays,
            dtype,
            profile,
            seed=seed,
        )

    _run_profile(profile, dropout_cases(which), prop)


# --- declared elementwise kernel ops: cases derived from each op's call record -------------

# every record a kernel family declares with elementwise=True (kernels/<family>/__init__.py);
# its fuzz_arguments() lists valid and invalid keyword sets, so a new family needs no line here
ELEMENTWISE = sorted(
    op
    for op, r in tg.kernels.declarations().items()
    if r.__dict__.get("op") and getattr(r, "elementwise", False)
)


@st.composite
def elementwise_cases(draw, op: str):
    rec = tg.kernels.declared(op)
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=5)))
    x = _arr(rng, shape, dtype) * draw(st.sampled_from([1.0, 4.0, 300.0]))
    if x.size and draw(st.booleans()):
        x.reshape(-1)[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf, -0.0]))
    return dtype, [x.astype(dtype)], draw(st.sampled_from(rec.fuzz_arguments()))


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
@pytest.mark.parametrize("op", ELEMENTWISE)
def test_fuzz_declared_elementwise(profile, op):
    f = getattr(F, tg.kernels.declared(op).functional)

    def prop(case):
        dtype, arrays, kw = case
        with np.errstate(all="ignore"):
            check_variants([op], f.__name__, lambda x, state: f(x, **kw), arrays, dtype, profile)

    _run_profile(profile, elementwise_cases(op), prop)


# --- every kernel op: the example calls its record declares (kernels/examples.py) ---------

# each record's examples over random data in both dtypes through every variant; the ops with
# a strategy above get more, a new family gets these without a line here
DECLARED = sorted(op for op, r in tg.kernels.declarations().items() if r.examples)


@st.composite
def example_cases(draw, op: str):
    rec = tg.kernels.declared(op)
    example = draw(st.sampled_from(rec.examples))
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1.0, 30.0]))
    return example, dtype, [(_arr(rng, s, dtype) * scale).astype(dtype) for s in example.shapes]


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
@pytest.mark.parametrize("op", DECLARED)
def test_fuzz_declared_examples(profile, op):
    public = tg.kernels.declared(op).functional

    def prop(case):
        example, dtype, arrays = case
        check_variants(
            [op],
            public,
            lambda *ts, state: example.call(F, *ts),
            arrays,
            dtype,
            profile,
            seed=example.seed,
        )

    _run_profile(profile, example_cases(op), prop, most=6)


@pytest.mark.torch
@pytest.mark.parametrize(
    "op", [op for op in DECLARED if any(e.torch for e in tg.kernels.declared(op).examples)]
)
def test_declared_examples_agree_with_torch(op):
    """The same call through torch.nn.functional (the record's functional name) gives the
    same output and input gradients, in float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    for example in [e for e in tg.kernels.declared(op).examples if e.torch]:
        arrays = [rng.standard_normal(s) for s in example.shapes]
        ts = _leaves(arrays)
        y = example.call(F, *ts)
        proj = rng.standard_normal(y.shape)
        y.backward(proj)
        tts = [torch.tensor(a, requires_grad=True) for a in arrays]
        ty = example.call(torch.nn.functional, *tts)
        ty.backward(torch.tensor(proj))
        _close(y.data, ty.detach().numpy(), np.float64, f"{op} {example.name} output")
        for i, (t, tt) in enumerate(zip(ts, tts)):
            _close(t.grad.data, tt.grad.numpy(), np.float64, f"{op} {example.name} grad {i}")


# --- ops without kernel variants: PyTorch as the second opinion ------------------------------


PLAIN_OPS = [
    "linear",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "mse_loss",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "relu",
    "sigmoid",
    "tanh",
]


@st.composite
def plain_cases(draw):
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    which = draw(st.sampled_from(PLAIN_OPS))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    scale = draw(st.sampled_from([1.0, 30.0, 1e4]))
    x = (_arr(rng, shape, dtype) * scale).astype(dtype)
    kw: dict = {}
    other = None
    if which == "linear":
        out = draw(st.integers(1, 4))
        other = _arr(rng, (out, shape[-1] + draw(st.sampled_from([0, 0, 0, 1]))), dtype)
    elif which in ("softmax", "log_softmax"):
        kw["dim"] = draw(st.integers(-len(shape) - 1, len(shape)))
    elif which == "cross_entropy":
        x = x.reshape(shape[0], -1) if draw(st.integers(0, 6)) else x
        c = x.shape[-1] if x.ndim == 2 else 3
        other = rng.integers(0, c + draw(st.sampled_from([0, 0, 0, 1])), x.shape[0])
        kw = dict(
            reduction=draw(st.sampled_from(["mean", "sum", "none", "avg"])),
            label_smoothing=draw(st.sampled_from([0.0, 0.1, 1.0, 1.2])),
        )
    elif which == "nll_loss":
        x = x.reshape(shape[0], -1) if draw(st.integers(0, 6)) else x
        c = x.shape[-1] if x.ndim == 2 else 3
        other = rng.integers(0, c + draw(st.sampled_from([0, 0, 0, 1])), x.shape[0])
        kw = dict(reduction=draw(st.sampled_from(["mean", "sum", "none", "avg"])))
    elif which == "binary_cross_entropy_with_logits":
        other = rng.random(shape if draw(st.integers(0, 6)) else shape[::-1] + (2,)).astype(dtype)
        kw = dict(reduction=draw(st.sampled_from(["mean", "sum", "none"])))
        if draw(st.booleans()):
            kw["pos_weight"] = rng.random(shape[-1:] if draw(st.integers(0, 4)) else (7,)) + 0.5
            kw["pos_weight"] = kw["pos_weight"].astype(dtype)
    elif which == "mse_loss":
        other = _arr(rng, shape if draw(st.integers(0, 6)) else shape[::-1] + (2,), dtype)
        kw = dict(reduction=draw(st.sampled_from(["mean", "sum", "none"])))
    return dtype, which, x, other, kw


def _torch_apply(torch, which, x, other, kw):
    tf = torch.nn.functional
    if which == "linear":
        return tf.linear(x, other)
    if which == "cross_entropy":
        return tf.cross_entropy(x, other, **kw)
    if which == "mse_loss":
        return tf.mse_loss(x, other, **kw)
    if which == "nll_loss":
        return tf.nll_loss(x, other, **kw)
    if which == "binary_cross_entropy_with_logits":
        kw = dict(kw)
        if "pos_weight" in kw:
            kw["pos_weight"] = torch.tensor(kw["pos_weight"])
        return tf.binary_cross_entropy_with_logits(x, other, **kw)
    if which in ("softmax", "log_softmax"):
        return getattr(tf, which)(x, **kw)
    return getattr(torch, which)(x)


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
def test_fuzz_plain_ops_against_torch(profile):
    torch = pytest.importorskip("torch")

    def prop(case):
        dtype, which, x, other, kw = case
        f = getattr(F, which)
        tx = tg.tensor(x.copy(), requires_grad=True)
        o_is_float = other is not None and other.dtype.kind == "f"
        to = tg.tensor(other.copy(), requires_grad=True) if o_is_float else other
        try:
            y = f(tx, to, **kw) if other is not None else f(tx, **kw)
        except (ValueError, TypeError) as e:
            EXAMPLES[(which, profile, "rejected")] += 1
            # the documented error (PyTorch may accept some of these by broadcasting)
            assert str(e).startswith(which), e
            return
        EXAMPLES[(which, profile, "accepted")] += 1
        proj = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
        y.backward(proj)
        ox = torch.tensor(x, requires_grad=True)
        oo = None if other is None else torch.tensor(other, requires_grad=o_is_float)
        ty = _torch_apply(torch, which, ox, oo, kw)
        ty.backward(torch.tensor(proj))
        _close(y.data, ty.detach().numpy(), dtype, f"{which} output")
        _close(tx.grad.data, ox.grad.numpy(), dtype, f"{which} grad")
        if o_is_float:
            _close(to.grad.data, oo.grad.numpy(), dtype, f"{which} grad other")

    _run_profile(profile, plain_cases(), prop)


@pytest.mark.parametrize("profile", PROFILE_PARAMS)
def test_zz_report_example_counts(report, profile):
    """How many fuzz examples ran in this session (printed with ``pytest --tables``)."""
    total = sum(v for k, v in EXAMPLES.items() if k[1] == profile)
    report(
        *(
            " ".join(map(str, ("fuzz", *key, EXAMPLES[key])))
            for key in sorted(k for k in EXAMPLES if k[1] == profile)
        ),
        f"fuzz total {profile} {total}",
    )
    if total:  # ran after the fuzz tests (default file order)
        mine = [k for k in EXAMPLES if k[1] == profile]
        assert any(k[2] == "rejected" for k in mine), "no rejected combination was drawn"
        assert any(k[2] == "accepted" for k in mine), "no accepted combination was drawn"


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_mse_loss_gradient_every_reduction(reduction):
    """The long fuzz profile found reduction='none' returning half the gradient."""
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = tg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert tg.gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, y])
