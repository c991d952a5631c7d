"""phase-cython's transposed convolution per pass, before and after the wide direct forward
(24 to 32 output channels) and the direct gradients' blocked transpose, per-block weights,
row prefetch and transposed tile stores.

In one process, the two settings alternated call by call: "after" is the code as it is;
"before" is the phase-cython module of another checkout (``--before DIR``: its
``kernels/conv_transpose/phase_cy.py`` and built ``_direct_grad_cy`` extension, loaded
beside this one), whose functions the op is pointed at for its "before" calls. Without
``--before`` only the forward is compared (``phase_cy._DIRECT_WIDE`` False: the phase
GEMMs). Passes: the forward, the input gradient alone, the weight gradient alone, both
gradients (with the bias gradient), and the op's forward + backward with bias. Wall and
process CPU ms medians and the min-max of the wall times. float32.

    python benchmarks/conv_transpose_wide.py [--threads 1] [--repeats 15]
        [--before /path/to/other/checkout] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import glob
import importlib.machinery
import importlib.util
import os

import numpy as np
from _report import finish, uptime
from _timing import alternated_samples
from conv_transpose_aligned import CASES, NEED, PASSES
from conv_transpose_passes import _arrays

_PKG = "tapegrad.kernels.conv_transpose"
_FUNCS = ("forward", "forward_relu", "backward", "backward_with_bias", "backward_relu")


def _load_before(root: str):
    """The phase_cy module of the checkout at ``root``, its direct kernels from that
    checkout's build (the rest of tapegrad shared with this one)."""
    so = glob.glob(os.path.join(root, "kernels/conv_transpose/_direct_grad_cy.*.so"))[0]
    name = f"{_PKG}._direct_grad_cy"
    loader = importlib.machinery.ExtensionFileLoader(name, so)
    ext = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(ext)
    path = os.path.join(root, "kernels/conv_transpose/phase_cy.py")
    spec = importlib.util.spec_from_file_location(f"{_PKG}._phase_cy_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod._direct_grads, mod._forward_direct = ext.grads, ext.forward_direct
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--before", default="")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    import tapegrad as tg
    import tapegrad.kernels as K
    import tapegrad.nn.functional as F
    from tapegrad.kernels.conv_transpose import phase_cy

    tg.set_num_threads(args.threads)
    before = _load_before(args.before) if args.before else None
    after_funcs = {f: getattr(phase_cy, f) for f in _FUNCS}

    def setting(after: bool):
        # the module the op calls (its functions the other checkout's for "before")
        src = after_funcs if after or before is None else {f: getattr(before, f) for f in _FUNCS}
        for f, fn in src.items():
            setattr(phase_cy, f, fn)
        phase_cy._DIRECT_WIDE = after or before is not None
        return phase_cy if after or before is None else before

    lines = [f"uptime at start: {uptime()}", ""]
    lines.append(
        f"threads: {args.threads}, {args.repeats} calls per setting alternated, float32; "
        "wall ms median (min-max), process CPU ms median; before: "
        + (f"the checkout at {args.before}" if before else "the phase GEMMs (forward only)")
    )
    lines += [
        "",
        "| case | pass | before wall (min-max) | CPU | after wall (min-max) | CPU |"
        " after/before CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    with K.use(conv_transpose2d="phase-cython"):
        for name, xs, ws, s, p, op in CASES:
            x, w, b, gy = _arrays(xs, ws, s, p, op)
            a = ((s, s), (p, p), (op, op), (1, 1), 1)
            tx, tw, tb = (tg.Tensor(v, requires_grad=True) for v in (x, w, b))
            for ps in PASSES if before else PASSES[:1]:

                def run(after, ps=ps, x=x, w=w, b=b, gy=gy, a=a, tx=tx, tw=tw, tb=tb, s=s,
                        p=p, op=op):  # fmt: skip
                    mod = setting(after)
                    if ps == "forward":
                        return mod.forward(x, w, b, *a)
                    if ps in NEED:
                        return mod.backward_with_bias(gy, x, w, *a, *NEED[ps])
                    y = F.conv_transpose2d(tx, tw, tb, s, p, op)
                    tx.grad = tw.grad = tb.grad = None
                    y.backward(gy)

                if ps != "op fwd+bwd":  # the two settings agree
                    r0, r1 = run(False), run(True)
                    r0, r1 = (r if isinstance(r, tuple) else (r,) for r in (r0, r1))
                    for u, v in zip(r0, r1):
                        if u is not None:
                            np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4)
                wall, cpu = alternated_samples(
                    {"before": lambda: run(False), "after": lambda: run(True)}, args.repeats
                )
                d, f = ({"w": np.median(wall[k]), "lo": min(wall[k]), "hi": max(wall[k]),
                         "c": np.median(cpu[k])} for k in ("before", "after"))  # fmt: skip
                lines.append(
                    f"| {name} | {ps} | {d['w']:.2f} ({d['lo']:.2f}-{d['hi']:.2f}) | "
                    f"{d['c']:.2f} | {f['w']:.2f} ({f['lo']:.2f}-{f['hi']:.2f}) | "
                    f"{f['c']:.2f} | {f['c'] / d['c']:.2f} |"
                )
    setting(True)
    finish(lines, args.out)


if __name__ == "__main__":
    main()
