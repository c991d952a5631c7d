"""``tapegrad.bench``: the case table, the runner's reference check, the report and the CLI.

Everything runs on tiny shapes with one or two repeats: these tests check what bench
reports, never how fast anything is.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
from tapegrad.bench import cases as C
from tapegrad.bench import machine, report, rules, runner
from tapegrad.bench.cli import run as bench_run
from tapegrad.kernels import registry as R
from tapegrad.kernels import tune

MACHINE = {"cpu": "test", "cores": 2, "threads": 1, "gemm_gflops": 10.0, "copy_gbps": 5.0,
           "gemm_n": 64, "versions": {}}  # fmt: skip
TINY_CONV = C.Case.make("conv2d", N=2, C=3, O=4, H=6, W=5, k=3, padding=1)
TINY_POOL = C.Case.make("max_pool2d", N=2, C=3, H=6, W=6, k=2)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TAPEGRAD_AUTO_RULES", str(tmp_path / "rules.json"))
    monkeypatch.delenv("TAPEGRAD_KERNELS", raising=False)
    K.autotune(False)
    K.disk_cache(True)
    K.clear_tuning()
    yield
    K.autotune(False)
    K.disk_cache(True)
    K.clear_tuning()


def _opts(**kw) -> runner.Options:
    return runner.Options(**{"repeat": 1, "progress": False, **kw})


# --- the case table ---------------------------------------------------------------------


def test_cases_listed_only_for_registered_ops(monkeypatch):
    assert set(C.registered_ops()) == {op for op in C.SPECS if op in K.ops()}
    assert "conv2d" in C.registered_ops()
    monkeypatch.setattr(K, "ops", lambda: ["max_pool2d", "some_future_op"])
    assert C.registered_ops() == ["max_pool2d"]
    assert {c.op for c in C.preset_cases("standard", C.registered_ops())} == {"max_pool2d"}
    with pytest.raises(ValueError, match="conv2d.*valid: max_pool2d"):
        C.resolve_ops(["conv2d"])


def test_resolve_ops_aliases_and_errors():
    assert C.resolve_ops(["conv", "conv2d"]) == ["conv2d"]
    assert C.resolve_ops(["max_pool"]) == ["max_pool2d"]
    with pytest.raises(ValueError, match="nope.*conv2d"):
        C.resolve_ops(["nope"])


def test_standard_cases_are_the_issue_shapes():
    std = {c.op: c.p for c in C.preset_cases("standard", list(C.SPECS))}
    conv = std["conv2d"]
    assert (conv["N"], conv["C"], conv["O"], conv["H"], conv["k"]) == (32, 64, 64, 32, 3)
    assert std["max_pool2d"]["N"] == 64 and std["max_pool2d"]["k"] == 2
    quick = {c.op: c.p for c in C.preset_cases("quick", list(C.SPECS))}
    assert quick["conv2d"]["N"] < conv["N"]
    assert all(c.op in C.SPECS for c in C.preset_cases("quick", list(C.SPECS)))


@pytest.mark.parametrize(
    "p",
    [
        dict(N=2, C=4, O=6, H=9, W=7, k=3, padding=1),
        dict(N=1, C=6, O=4, H=8, W=8, k=(3, 5), padding=(1, 2)),
        dict(N=2, C=6, O=4, H=7, W=8, k=3, stride=2, dilation=2, groups=2),
        dict(N=3, C=2, O=2, H=5, W=5, k=1, bias=False),
    ],
)
def test_conv_flops_match_torch_flop_counter(p):
    # backward only for ungrouped 'same'-size outputs: torch's counter prices the input
    # gradient as a convolution over the input's size (zeros of strides and borders
    # included); bench counts the forward's multiply-adds, which each gradient repeats
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    spec = C.SPECS["conv2d"]
    arrays, _ = spec.build(p, np.random.default_rng(0), np.float32)
    T = {k: torch.from_numpy(v).requires_grad_() for k, v in arrays.items()}
    with FlopCounterMode(display=False) as fwd:
        y = spec.torch_call(T, p)
    with FlopCounterMode(display=False) as bwd:
        y.backward(torch.ones_like(y))
    bias = y.numel() if p.get("bias", True) else 0  # torch does not count the bias adds
    assert spec.flops(p, "forward") - bias == fwd.get_total_flops()
    if p.get("groups", 1) == 1 and p.get("stride", 1) == 1:
        assert spec.flops(p, "backward") - bias == bwd.get_total_flops()
    assert spec.flops(p, "both") == spec.flops(p, "forward") + spec.flops(p, "backward")


def test_bytes_count_every_array_once():
    p = TINY_POOL.p
    spec = C.SPECS["max_pool2d"]
    x, y = 2 * 3 * 6 * 6, 2 * 3 * 3 * 3
    assert spec.bytes(p, "forward") == 4 * x + 4 * y + 4 * y  # x, y and the int32 argmax
    p = TINY_CONV.p
    x, w, b, y = 2 * 3 * 6 * 5, 4 * 3 * 9, 4, 2 * 4 * 6 * 5
    assert C.SPECS["conv2d"].bytes(p, "forward") == 4 * (x + w + b + y)


def _signature_of(op_call) -> tuple:
    with K.record() as calls:
        op_call()
    return calls[0][1]


@pytest.mark.parametrize(
    "p",
    [
        dict(N=2, C=4, O=6, H=9, W=7, k=(3, 2), stride=(2, 1), padding=(1, 0), dilation=1),
        dict(N=1, C=4, O=2, H=6, W=6, k=3, stride=1, padding=2, dilation=2, groups=2),
    ],
)
def test_conv_case_from_signature_round_trips(p):
    spec = C.SPECS["conv2d"]
    arrays, _ = spec.build(p, np.random.default_rng(0), np.float32)
    T = {k: tg.Tensor(v) for k, v in arrays.items()}
    sig = _signature_of(lambda: spec.call(T, p))
    (case,) = C.cases_from_signatures([("conv2d", sig), ("conv2d", sig)], ["conv2d"])
    assert case == C.Case.make("conv2d", **{**C.Case.make("conv2d", **p).p, **case.p})
    q = case.p
    assert spec.flops(q, "both") == spec.flops(p, "both")
    assert spec.bytes(q, "forward") == spec.bytes(p, "forward")


def test_pool_case_from_signature_round_trips():
    x = tg.Tensor(np.zeros((2, 3, 7, 9), dtype=np.float32))
    sig = _signature_of(lambda: F.max_pool2d(x, (3, 2), stride=(2, 1), padding=1))
    (case,) = C.cases_from_signatures([("max_pool2d", sig)], ["max_pool2d"])
    p = case.p
    assert (p["N"], p["C"], p["H"], p["W"]) == (2, 3, 7, 9)
    assert p["k"] == (3, 2) and p["stride"] == (2, 1) and p["padding"] == (1, 1)


def test_unknown_signatures_are_skipped():
    from tapegrad.kernels.pool import MaxPool2dCall

    pool = MaxPool2dCall((1, 1, 4, 4), (2, 2), (2, 2), (0, 0), (1, 1), (2, 2), "<f4")
    calls = [("conv2d", ("garbage",)), ("max_pool2d", pool)]
    got = C.cases_from_signatures(calls, ["conv2d", "max_pool2d"])
    assert [c.op for c in got] == ["max_pool2d"]


def test_zoo_preset_lists_the_model_layers():
    zoo = pytest.importorskip("tapegrad.zoo")
    if "lenet5" not in zoo.MODELS:
        pytest.skip("lenet5 not in the zoo")
    got = C.zoo_cases("lenet5", ["conv2d", "max_pool2d"], batch=2)
    convs = [c.p for c in got if c.op == "conv2d"]
    pools = [c.p for c in got if c.op == "max_pool2d"]
    assert [(p["C"], p["O"], p["k"]) for p in convs] == [(1, 6, (5, 5)), (6, 16, (5, 5))]
    assert [(p["H"], p["W"]) for p in convs] == [(28, 28), (14, 14)]
    assert [(p["C"], p["H"]) for p in pools] == [(6, 28), (16, 10)]
    assert all(p["N"] == 2 for p in convs + pools)
    with pytest.raises(ValueError, match="unknown zoo model"):
        C.zoo_cases("no_such_model", ["conv2d"])


def test_file_cases(tmp_path):
    f = tmp_path / "shapes.json"
    f.write_text(
        json.dumps(
            [
                {"op": "conv", "N": 1, "C": 2, "O": 3, "H": 4, "W": 4, "k": 3},
                {"op": "max_pool2d", "N": 1, "C": 2, "H": 4, "W": 4, "k": 2},
            ]
        )
    )
    got = C.file_cases(f, ["conv2d"])
    assert [c.op for c in got] == ["conv2d"] and got[0].p["k"] == 3
    f.write_text(json.dumps([{"N": 1}]))
    with pytest.raises(ValueError, match="'op'"):
        C.file_cases(f, ["conv2d"])


# --- the runner -------------------------------------------------------------------------


def test_run_case_rows_per_variant_and_direction():
    variants = ["reference", *runner.variants_for("conv2d", None)]
    rows = runner.run_case(TINY_CONV, variants, MACHINE, _opts(repeat=2))
    assert {(r["variant"], r["direction"]) for r in rows} == {
        (v, d) for v in variants for d in C.DIRECTIONS
    }
    for r in rows:
        assert r["agree"] is True and r["max_err"] < 1e-4
        assert 0 < r["p25_s"] <= r["median_s"] <= r["p75_s"]
        assert r["jit_s"] >= 0 and r["first_s"] > 0
        assert r["flops"] == C.SPECS["conv2d"].flops(TINY_CONV.p, r["direction"])
        assert r["rate"] == pytest.approx(r["flops"] / r["median_s"] / 1e9)
        assert r["fraction"] == pytest.approx(r["rate"] / MACHINE["gemm_gflops"])
        assert r["signature"].startswith("conv2d/v1(x_shape=(2, 3, 6, 5), w_shape=")
    pool = runner.run_case(TINY_POOL, ["direct-numba"], MACHINE, _opts(directions=("forward",)))
    assert [(r["direction"], r["unit"]) for r in pool] == [("forward", "GB/s")]
    assert pool[0]["fraction"] == pytest.approx(pool[0]["gbps"] / MACHINE["copy_gbps"])


def test_each_thread_team_is_timed_on_its_own(monkeypatch):
    """The timed samples of a direction run team by team (Cython, Numba, the rest), never
    a Cython sample between Numba ones: a kernel is not billed for another team's
    spinning threads."""
    assert [tune.team(v) for v in ("im2col-cython", "direct-numba", "reference", "mine")] == [
        "cython",
        "numba",
        "other",
        "other",
    ]
    order: list[tuple[str, str]] = []
    chosen: list[str] = []
    timings, use = runner._Harness.timings, K.use

    def spy_use(**choice):
        chosen.append(choice.get("conv2d", "?"))
        return use(**choice)

    def spy(self, direction, repeat, warm=True):
        if repeat and not warm:
            order.append((chosen[-1], direction))
        return timings(self, direction, repeat, warm)

    monkeypatch.setattr(K, "use", spy_use)
    monkeypatch.setattr(runner._Harness, "timings", spy)
    variants = ["direct-numba", "direct-cython", "im2col-numba", "im2col-cython", "reference"]
    runner.run_case(TINY_CONV, variants, MACHINE, _opts(repeat=3, directions=("forward",)))
    teams = [tune.team(v) for v, _ in order]
    assert len(order) == 3 * len(variants)
    # each team's samples are one contiguous block, in order of first appearance
    assert teams == sorted(teams, key=["numba", "cython", "other"].index)
    assert {v for v, _ in order[:6]} == {"direct-numba", "im2col-numba"}


@pytest.fixture
def wrong_variant():
    """A conv2d variant that is fast and wrong: reference output scaled by 1.01."""
    ref = K.get("conv2d", "reference")
    mod = types.ModuleType("_tg_bench_wrong_conv")
    mod.forward = lambda *a: ref.forward(*a) * np.float32(1.01)
    mod.backward = ref.backward
    sys.modules[mod.__name__] = mod
    R.register("conv2d", "wrong-numpy", mod.__name__)
    yield "wrong-numpy"
    R._OPS["conv2d"].variants.pop("wrong-numpy", None)
    del sys.modules[mod.__name__]


def test_a_wrong_kernel_shows_as_wrong(wrong_variant):
    rows = runner.run_case(TINY_CONV, ["im2col-numba", wrong_variant], MACHINE, _opts())
    verdict = {r["variant"]: r["agree"] for r in rows}
    assert verdict == {"im2col-numba": True, wrong_variant: False}
    bad = next(r for r in rows if r["variant"] == wrong_variant)
    assert bad["max_err"] == pytest.approx(0.01, rel=1e-3)
    assert "WRONG" in report.format_table(rows, MACHINE)


def test_auto_with_autotune_reports_the_chosen_variant():
    K.autotune(True)
    rows = runner.run_case(TINY_CONV, ["auto"], MACHINE, _opts(directions=("forward",)))
    (row,) = rows
    assert row["variant"] == "auto"
    assert row["chosen"] in K.variants("conv2d") and row["chosen"] != "reference"
    assert row["agree"] is True


def test_torch_comparison_columns():
    pytest.importorskip("torch")
    rows = runner.run_case(TINY_POOL, ["direct-numba"], MACHINE, _opts(compare_torch=True))
    for r in rows:
        assert r["torch_s"] > 0
        assert r["ratio"] == pytest.approx(r["median_s"] / r["torch_s"])
    assert "torch ms" in report.format_table(rows, MACHINE)


def test_variant_name_checks():
    runner.check_variant_names(["conv2d"], ["im2col-numba", "auto"])
    with pytest.raises(ValueError, match="im2col-fortran.*valid"):
        runner.check_variant_names(["conv2d"], ["im2col-fortran"])
    assert runner.variants_for("max_pool2d", ["im2col-numba", "direct-numba"]) == ["direct-numba"]
    assert "reference" not in runner.variants_for("conv2d", None)
    assert runner.variants_for("conv2d", None, autotune=True)[-1] == "auto"


# --- machine, report, rules ---------------------------------------------------------------


def test_machine_info_measures_both_ceilings():
    assert machine.gemm_gflops(128, 1) > 0
    assert machine.copy_gbps(1, 1) > 0
    info = machine.info(1, quick=True)
    for key in ("cpu", "cores", "threads", "versions", "gemm_gflops", "copy_gbps"):
        assert key in info
    assert info["versions"]["numpy"] == np.__version__
    small = machine.copy_gbps_at(64 * 1024)
    assert small > 0 and machine.copy_gbps_at(64 * 1024) == small  # memoised per size


def _row(variant: str, median: float, direction: str = "both", **kw) -> dict:
    return {"op": "conv2d", "case": "c", "variant": variant, "direction": direction,
            "median_s": median, "signature": "('conv2d', (1, 2, 3, 4))", "size": 4.6,
            **kw}  # fmt: skip


def test_compare_json_ratios(tmp_path):
    a = {"results": [_row("x", 2.0), _row("y", 1.0), _row("z", 1.0)]}
    b = {"results": [_row("x", 1.0), _row("y", 3.0)]}
    out = report.compare(a, b)
    lines = [ln.split() for ln in out.splitlines()]
    assert any(ln[2:] == ["x", "both", "2000", "1000", "0.50", "faster"] for ln in lines)
    assert any(ln[2:] == ["y", "both", "1000", "3000", "3.00", "slower"] for ln in lines)
    assert "2 matched cases" in out and f"{np.sqrt(1.5):.3f}" in out


def test_json_and_plot_written(tmp_path):
    rows = runner.run_case(TINY_POOL, ["direct-numba"], MACHINE, _opts())
    out = tmp_path / "r.json"
    report.write_json(out, rows, MACHINE, {"repeat": 1})
    doc = report.read_json(out)
    assert doc["schema"] == report.SCHEMA and len(doc["results"]) == 3
    pytest.importorskip("matplotlib")
    png = tmp_path / "r.png"
    report.plot(png, rows, MACHINE)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rules_pick_the_fastest_agreeing_variant(tmp_path, monkeypatch):
    doc = {
        "machine": MACHINE,
        "results": [
            _row("im2col-numba", 2.0),
            _row("im2col-cython", 1.0, agree=False),  # wrong: never a winner
            _row("reference", 0.5),  # reference and auto are never rules
            _row("im2col-numba", 9.0, direction="forward"),
        ],
    }
    doc["results"].append(_row("im2col-cython", 3.0))
    doc["results"][-1]["signature"] = "('conv2d', (9, 9))"
    got = rules.rules_from_results(doc)["ops"]["conv2d"]
    winners = {c["signature"]: c["winner"] for c in got["cases"]}
    assert winners == {"('conv2d', (1, 2, 3, 4))": "im2col-numba",
                       "('conv2d', (9, 9))": "im2col-cython"}  # fmt: skip


def test_written_rules_drive_auto(tmp_path, monkeypatch):
    x = tg.Tensor(np.zeros((1, 2, 5, 5), dtype=np.float32))
    w = tg.Tensor(np.zeros((3, 2, 3, 3), dtype=np.float32))
    sig = _signature_of(lambda: F.conv2d(x, w))
    hand = K.resolved_name("conv2d", sig)
    other = next(v for v in K.variants("conv2d") if v not in (hand, "reference"))
    doc = {"machine": {**MACHINE, "threads": tg.get_num_threads()}, "results": [
        {**_row(other, 1.0), "signature": repr(sig), "size": R.signature_size(sig)},
        {**_row(hand, 2.0), "signature": repr(sig), "size": R.signature_size(sig)},
    ]}  # fmt: skip
    path = rules.write_rules(doc)
    assert path == R.rules_path() and path.exists()
    assert K.resolved_name("conv2d", sig) == other


# --- the command line ---------------------------------------------------------------------


def test_bench_says_where_its_thread_count_came_from(monkeypatch):
    """On a busy machine tapegrad's default leaves out the busy cores: bench reports the
    count and its source, so a 1-thread run on 2 cores is not mistaken for a 2-thread one."""
    from tapegrad.bench.cli import thread_count
    from tapegrad.kernels import threads as T

    assert thread_count(3) == (3, "--threads")
    monkeypatch.setitem(T._state, "n", None)
    monkeypatch.setenv("TAPEGRAD_NUM_THREADS", "1")
    assert thread_count(None) == (1, "TAPEGRAD_NUM_THREADS")
    monkeypatch.delenv("TAPEGRAD_NUM_THREADS")
    monkeypatch.setitem(T._state, "default", None)
    monkeypatch.setattr(T, "_cores", lambda: 2)
    monkeypatch.setattr(T, "busy_cores", lambda window=0.03: 1.6)
    n, source = thread_count(None)
    assert n == 1 and source.startswith("default: 2 cores, 1.6 busy; --threads or")
    monkeypatch.setattr(T, "busy_cores", lambda window=0.03: 0.2)
    monkeypatch.setitem(T._state, "default", None)
    assert thread_count(None) == (2, "default: 2 cores, 0.2 busy")


def test_cli_end_to_end(tmp_path, capsys):
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps([{"op": "max_pool2d", "N": 1, "C": 2, "H": 6, "W": 6, "k": 2}]))
    out, png = tmp_path / "a.json", tmp_path / "a.png"
    code = bench_run(["--ops", "max_pool2d", "--shapes", str(shapes), "--repeat", "1",
                      "--threads", "1", "--json", str(out), "--no-progress",
                      "--directions", "forward,both", "--quick"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "max_pool2d" in printed and "GB/s" in printed and "ok" in printed
    doc = report.read_json(out)
    assert {r["direction"] for r in doc["results"]} == {"forward", "both"}
    assert doc["machine"]["threads"] == 1 and doc["config"]["repeat"] == 1
    assert doc["config"]["threads_source"] == doc["machine"]["threads_source"] == "--threads"
    assert "1 threads (--threads)" in printed
    assert bench_run(["--compare-json", str(out), str(out)]) == 0
    assert "geometric mean B/A = 1.000" in capsys.readouterr().out
    rules_out = tmp_path / "rules_out.json"
    assert bench_run(["--rules-from", str(out), "--write-rules", str(rules_out)]) == 0
    assert "max_pool2d" in json.loads(rules_out.read_text())["ops"]
    del png


@pytest.mark.parametrize(
    "argv",
    [["--ops", "nope"], ["--variants", "im2col-fortran"], ["--shapes", "missing.json"],
     ["--directions", "sideways"], ["--repeat", "0"]],
)  # fmt: skip
def test_cli_bad_arguments(argv, capsys):
    assert bench_run([*argv, "--no-progress"]) == 2
    assert "error: bench:" in capsys.readouterr().err


def test_cli_clear_cache(tmp_path, capsys):
    path = K.autotune_cache_path()
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    assert bench_run(["--clear-cache"]) == 0
    assert not path.exists()
    assert "removed 1" in capsys.readouterr().out


def _tiny(p: dict) -> dict:
    q = {**p, "N": 2, "H": 5, "W": 4}
    if q.get("groups") == q.get("C") and "O" in q:  # depthwise
        q.update(C=4, O=4, groups=4)
    elif "O" in q:
        q.update(C=4, O=2)
    elif "groups" in q:  # group norm
        q.update(C=4, groups=2)
    else:
        q["C"] = 3
    return q


# the declared elementwise ops share one derived spec (bench/cases.py): the first stands for
# the others, whose records' bench_params are checked in tests/kernels/test_pointwise.py
_ELEMENTWISE = sorted(
    op
    for op, r in K.declarations().items()
    if r.__dict__.get("op") and getattr(r, "elementwise", False)
)


@pytest.mark.parametrize("op", [op for op in C.registered_ops() if op not in _ELEMENTWISE[1:]])
def test_every_registered_op_round_trips_its_signature(op):
    """Building a case from the signature its op records gives the same kernel call, and
    the case agrees with reference: the zoo presets and the rules rely on both."""
    spec = C.SPECS[op]
    p = _tiny(spec.standard[0])
    arrays, _ = spec.build(p, np.random.default_rng(0), np.float32)
    T = {k: tg.Tensor(v) for k, v in arrays.items()}
    with K.record() as calls:
        spec.call(T, p)
    sig = next(s for o, s in calls if o == op)
    (case,) = C.cases_from_signatures([(op, sig)], [op])
    q = case.p
    arrays2, _ = spec.build(q, np.random.default_rng(0), np.float32)
    T2 = {k: tg.Tensor(v) for k, v in arrays2.items()}
    with K.record() as calls2:
        spec.call(T2, q)
    assert next(s for o, s in calls2 if o == op) == sig
    assert spec.bytes(q, "forward") == spec.bytes(p, "forward") or op == "layer_norm"
    rows = runner.run_case(case, runner.variants_for(op, None)[:1], MACHINE, _opts())
    assert rows and all(r.get("agree") for r in rows), rows


@pytest.mark.parametrize("no_cache", [False, True])
def test_cli_autotune_disk_cache(tmp_path, capsys, no_cache):
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps([{"op": "max_pool2d", "N": 1, "C": 2, "H": 4, "W": 4, "k": 2}]))
    argv = [
        "--ops",
        "max_pool2d",
        "--shapes",
        str(shapes),
        "--repeat",
        "1",
        "--quick",
        "--variants",
        "auto",
        "--autotune",
        "--directions",
        "forward",
        "--no-progress",
    ]
    assert bench_run(argv + (["--no-cache"] if no_cache else [])) == 0
    assert "auto (direct-" in capsys.readouterr().out  # the table names auto's choice
    assert K.autotune_cache_path().exists() is not no_cache
