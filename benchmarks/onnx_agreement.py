"""ONNX Runtime against tapegrad's eval forward: the largest relative error per model.

Every zoo model (batch-norm statistics moved off 0 and 1, as after training) and the
one-layer models of ``tests/_deploy.py`` are exported (plain and with ``fold=True``) and
run in ONNX Runtime (CPU) at batch 1 and 7 from one file with a dynamic batch axis. The
error is ``max |ort - tapegrad| / max |tapegrad|`` over both batches.

    python benchmarks/onnx_agreement.py

Writes ``benchmarks/results/onnx-agreement.md``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnxruntime as ort  # noqa: E402

import tapegrad as tg  # noqa: E402
from tapegrad import zoo  # noqa: E402
from tapegrad.onnx import export  # noqa: E402
from tests._deploy import LAYER_CASES, eval_forward, perturb, rel_err, zoo_case  # noqa: E402

BATCHES = (1, 7)


def agreement(model, sample, path: Path, fold: bool) -> float:
    rng = np.random.default_rng(0)
    export(model, rng.standard_normal((1, *sample)).astype(np.float32), path, fold=fold)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in BATCHES:
        x = rng.standard_normal((n, *sample)).astype(np.float32)
        (got,) = sess.run(None, {"input": x})
        worst = max(worst, rel_err(got, eval_forward(model, x)))
    return worst


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "m.onnx"
        for name in zoo.available():
            model, sample = zoo_case(name)
            rows.append(
                (name, agreement(model, sample, path, False), agreement(model, sample, path, True))
            )
        for case_id, build, sample in LAYER_CASES:
            tg.manual_seed(3)
            model = perturb(build())
            rows.append((f"layer: {case_id}", agreement(model, sample, path, False), None))
    lines = [
        "# ONNX Runtime agreement",
        "",
        f"onnxruntime {ort.__version__}, opset 17, one file with a dynamic batch axis run at "
        f"batch {' and '.join(map(str, BATCHES))}; error = max |ort - tapegrad| / "
        "max |tapegrad| (float32) over both batches. Tolerance in the tests: 1e-5.",
        "",
        "| model | max rel error | folded export | batch sizes |",
        "|---|---|---|---|",
    ]
    for name, plain, folded in rows:
        f = "" if folded is None else f"{folded:.2e}"
        lines.append(f"| {name} | {plain:.2e} | {f} | {', '.join(map(str, BATCHES))} |")
    out = ROOT / "benchmarks" / "results" / "onnx-agreement.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
