"""The public plugin API: tapegrad.kernels.register / get, bench --plugin, the entry-point
group, and a registry that changes no process-wide setting when it resolves a call."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
from tapegrad.bench.cli import run as bench_run
from tapegrad.kernels import registry as R

DOC = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "kernels.md"


def _doc_example() -> str:
    """The worked example of docs/tutorials/kernels.md, as written there."""
    text = DOC.read_text()
    m = re.search(r"<!-- plugin-example[^\n]*-->\n```py\n(.*?)```", text, re.S)
    assert m, "the plugin example is missing from docs/tutorials/kernels.md"
    return m.group(1)


@pytest.fixture
def clean(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TAPEGRAD_AUTO_RULES", str(tmp_path / "rules.json"))
    monkeypatch.delenv("TAPEGRAD_KERNELS", raising=False)
    K.autotune(False)
    K.clear_tuning()
    before = {op: dict(R._OPS[op].variants) for op in R._OPS}
    yield tmp_path
    K.autotune(False)
    K.clear_tuning()
    for op in list(R._OPS):
        if op in before:
            R._OPS[op].variants = before[op]
        else:
            del R._OPS[op]
    R._auto_memo.clear()
    for name in [n for n in sys.modules if n.startswith("tapegrad_plugin_")]:
        del sys.modules[name]


def _x_w(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = tg.Tensor(rng.standard_normal((2, 4, 7, 6)).astype(np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((6, 2, 3, 3)).astype(np.float32), requires_grad=True)
    return x, w


def _scaled(factor: float) -> types.SimpleNamespace:
    """A conv2d variant object: the reference forward times ``factor``."""
    ref = K.get("conv2d", "reference")
    calls: list[str] = []

    def forward(*args):
        calls.append("forward")
        return ref.forward(*args) * np.float32(factor)

    return types.SimpleNamespace(forward=forward, backward=ref.backward, calls=calls)


def test_register_an_object_and_run_it(clean):
    mine = _scaled(2.0)
    K.register("conv2d", "twice", mine)
    assert "twice" in K.variants("conv2d")
    assert K.get("conv2d", "twice") is mine
    x, w = _x_w()
    kw = dict(stride=(2, 1), padding=1, groups=2)
    with K.use(conv2d="reference"):
        want = F.conv2d(x, w, **kw).numpy()
    with K.use(conv2d="twice"):
        y = F.conv2d(x, w, **kw)
    np.testing.assert_allclose(y.numpy(), 2 * want, rtol=1e-5, atol=1e-6)
    assert mine.calls == ["forward"]


def test_register_checks_the_kernel_functions(clean):
    with pytest.raises(TypeError, match="register: .* does not provide backward"):
        K.register("conv2d", "half", types.SimpleNamespace(forward=lambda *a: None))
    with pytest.raises(TypeError, match="relu_forward, relu_backward"):
        K.register("relu", "none", object())
    with pytest.raises(ValueError, match="'auto' is the selection policy"):
        K.register("conv2d", "auto", _scaled(1.0))
    with pytest.raises(ValueError, match="variant must be a non-empty string"):
        K.register("conv2d", "", _scaled(1.0))
    assert "half" not in K.variants("conv2d", include_unavailable=True)


def test_autotune_times_a_registered_variant(clean):
    mine = _scaled(1.0)
    K.register("conv2d", "mine", mine)
    K.disk_cache(False)
    K.autotune(True)
    try:
        x, w = _x_w(1)
        F.conv2d(x.detach(), w.detach(), padding=1, groups=2)
    finally:
        K.autotune(False)
        K.disk_cache(True)
    # the warm-up and the timed rounds ran it beside the built-in candidates
    assert len(mine.calls) >= 3


def test_entry_point_plugins_load_once(clean, monkeypatch):
    loaded: list[str] = []

    def plugin() -> None:
        loaded.append("ok")
        K.register("conv2d", "from-entry-point", _scaled(1.0))

    class EP:
        def __init__(self, name, target):
            self.name, self.target = name, target

        def load(self):
            if isinstance(self.target, Exception):
                raise self.target
            return self.target

    import importlib.metadata as md

    def fake_entry_points(group):
        assert group == R.PLUGIN_GROUP
        return [EP("good", plugin), EP("broken", ImportError("no module named nope"))]

    monkeypatch.setattr(md, "entry_points", fake_entry_points)
    monkeypatch.setitem(R._plugins, "loaded", False)
    assert "from-entry-point" in K.variants("conv2d")
    assert loaded == ["ok"]
    errors = K.load_plugins()  # once per process: not loaded again
    assert loaded == ["ok"] and errors == {"broken": "ImportError: no module named nope"}


def test_resolve_changes_no_process_setting(clean, monkeypatch):
    from tapegrad.kernels import memory, threads

    def forbidden(*a, **k):
        raise AssertionError("resolve changed a process-wide setting")

    monkeypatch.setattr(threads, "apply", forbidden)
    monkeypatch.setattr(threads, "ensure_applied", forbidden)
    monkeypatch.setattr(memory, "ensure_applied", forbidden)
    call = K.declared("conv2d")((1, 1, 4, 4), (1, 1, 3, 3), (1, 1), (0, 0), (1, 1), 1, "<f4")
    assert K.resolve("conv2d", call) is K.get("conv2d", K.resolved_name("conv2d", call))


def test_tuned_results_live_in_the_cache_folder(clean, monkeypatch):
    monkeypatch.delenv("TAPEGRAD_AUTO_RULES")
    package = Path(K.__file__).parent
    for path in (K.rules_path(), K.autotune_cache_path()):
        assert path.parent == clean / "cache" / "tapegrad"
        assert package not in path.parents
    assert K.rules_path().name.split("-")[1] == K.autotune_cache_path().name.split("-")[1]


def _write_example(tmp_path: Path, wrong: bool = False) -> Path:
    code = _doc_example()
    if wrong:  # a variant that forgets the bias
        code = code.replace("return y if b is None else y + b.reshape(1, -1, 1, 1)", "return y")
        assert "return y\n" in code
    path = tmp_path / ("wrong_variants.py" if wrong else "my_variants.py")
    path.write_text(code)
    return path


def _bench(tmp_path: Path, plugin: Path) -> int:
    shapes = tmp_path / "shapes.json"
    case = {"op": "conv2d", "N": 2, "C": 4, "O": 6, "H": 7, "W": 6, "k": 3, "padding": 1,
            "stride": [2, 1], "groups": 2}  # fmt: skip
    shapes.write_text(json.dumps([case]))
    argv = ["--plugin", str(plugin), "--ops", "conv2d", "--variants", "mine,im2col-cython",
            "--shapes", str(shapes), "--repeat", "1", "--no-progress",
            "--json", str(tmp_path / "out.json")]  # fmt: skip
    return bench_run(argv)


def test_doc_example_variant_passes_bench(clean, capsys):
    assert _bench(clean, _write_example(clean)) == 0
    doc = json.loads((clean / "out.json").read_text())
    rows = [r for r in doc["results"] if r["variant"] == "mine"]
    assert {r["direction"] for r in rows} == {"forward", "backward", "both"}
    assert all(r["agree"] for r in rows)
    assert capsys.readouterr().err == ""


def test_wrong_plugin_variant_is_flagged(clean, capsys):
    assert _bench(clean, _write_example(clean, wrong=True)) == 1
    assert "conv2d/mine" in capsys.readouterr().err


def test_bench_plugin_errors_name_the_file(clean, capsys):
    assert bench_run(["--plugin", str(clean / "absent.py"), "--ops", "conv2d"]) == 2
    assert "absent.py: no such file" in capsys.readouterr().err
    bad = clean / "bad_plugin.py"
    bad.write_text("import tapegrad.kernels as K\nK.register('conv2d', 'x', object())\n")
    assert bench_run(["--plugin", str(bad), "--ops", "conv2d"]) == 2
    err = capsys.readouterr().err
    assert "bad_plugin.py failed: TypeError" in err and "does not provide forward" in err
