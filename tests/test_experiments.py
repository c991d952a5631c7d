"""The homework's experiments: each asserts the numbers the solutions print.

Every experiment has a fast test here (the whole file runs in well under a minute on 2
cores); longer training runs of the same experiments are marked slow.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest

from tapegrad import experiments
from tapegrad.experiments import cli

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path) -> bool:
    return path.read_bytes()[:8] == PNG


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.main(parser.parse_args(argv))


# --- registry and command line ------------------------------------------------------------


def test_registry_lists_every_experiment_with_a_loadable_module():
    assert experiments.names() == [
        "filter-recovery",
        "transpose-conv",
        "bn-gradient",
        "separable-params",
        "dropout-tikhonov",
        "dropout-regression",
        "dropout-cheating",
        "bn-distribution",
        "dropout-overfit",
        "bn-graph",
    ]
    for e in experiments.EXPERIMENTS.values():
        mod = e.load()
        assert callable(mod.run) and callable(mod.report) and callable(mod.plot)
    with pytest.raises(ValueError, match="unknown experiment 'nope'; choose one of"):
        experiments.get("nope")


def test_cli_list_unknown_and_missing_name(capsys):
    assert _run_cli(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in experiments.names())
    assert _run_cli(["no-such-thing"]) == 2
    assert "unknown experiment 'no-such-thing'" in capsys.readouterr().err
    assert _run_cli([]) == 2
    assert _run_cli(["bn-graph", "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_module_entry_point_runs_an_experiment_and_plots(tmp_path):
    out = tmp_path / "bn.png"
    proc = subprocess.run(
        [sys.executable, "-m", "tapegrad.experiments", "bn-graph", "--plot", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "same as the homework's edges" in proc.stdout
    assert _png(out)


# --- 1(b) filter-recovery ---------------------------------------------------------------


def test_filter_recovery(tmp_path, capsys, one_thread):
    r = experiments.run("filter-recovery")
    np.testing.assert_array_equal(r.system, [[1, 4, 0], [4, 0, -2], [0, -2, 3]])
    np.testing.assert_allclose(r.solved, [2, -1, 3], atol=1e-12)
    # a random start, not the answer, then gradient descent reaches it
    assert np.abs(r.initial - [2, -1, 3]).min() > 0.5
    np.testing.assert_allclose(r.trained, [2, -1, 3], atol=1e-4)
    np.testing.assert_allclose(r.trained_output, [-2, 2, 11], atol=1e-4)
    assert r.losses[-1] < 1e-8 < r.losses[0]
    assert _run_cli(["filter-recovery", "--plot", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    assert "filter by solving the system:  [2.0000, -1.0000, 3.0000]" in out
    assert "Conv1d after 120 SGD steps:    [2.0000, -1.0000, 3.0000]" in out
    assert _png(tmp_path / "a.png")


# --- 2(b) bn-gradient ----------------------------------------------------------------------


def test_bn_gradient(tmp_path):
    r = experiments.run("bn-gradient")
    assert r.sizes[0] == 1 and r.grad_x1[0] == 0.0  # exactly zero for a batch of one
    np.testing.assert_allclose(r.grad_x1, r.formula, rtol=1e-12, atol=1e-12)
    n = np.asarray(r.sizes, dtype=float)
    np.testing.assert_allclose(r.jac_diag, r.gamma * (1 - 1 / n), rtol=1e-12)
    np.testing.assert_allclose(r.jac_off[1:], -r.gamma / n[1:], rtol=1e-12)
    # tends to gamma * dL/dy_1 = gamma as n grows
    assert abs(r.grad_x1[-1] - r.limit[-1]) < 0.1 < abs(r.grad_x1[1] - r.limit[1])
    text = experiments.report("bn-gradient", r)
    assert "\n1   " in text and "+0.000000" in text
    experiments.plot("bn-gradient", r, tmp_path / "b.png")
    assert _png(tmp_path / "b.png")


# --- 3 separable-params ------------------------------------------------------------------


def test_separable_params(tmp_path):
    r = experiments.run("separable-params")
    assert r.params["standard"] == 108 and r.params["separable"] == 39
    assert r.params["standard+bias"] == 112 and r.params["separable+bias"] == 43
    assert r.params["separable+both biases"] == 46
    assert r.layer_params == {"depthwise": 27, "pointwise": 12}
    assert r.out_shapes == {"standard": (1, 4, 224, 224), "separable": (1, 4, 224, 224)}
    pixels = 224 * 224
    assert r.macs["standard"] == pixels * 4 * 27
    assert r.macs["separable"] == pixels * (3 * 9 + 4 * 3)
    assert r.flops["standard"] == 2 * r.macs["standard"]
    text = experiments.report("separable-params", r)
    assert "weights: 108 vs 39" in text and "with biases 112 vs 43" in text
    experiments.plot("separable-params", r, tmp_path / "s.png")
    assert _png(tmp_path / "s.png")


# --- 4 / 8 dropout-tikhonov ----------------------------------------------------------------


def test_dropout_tikhonov(tmp_path, one_thread):
    r = experiments.run("dropout-tikhonov", mc_samples=8000, train_steps=3000)
    assert r.n_masks == 2**12
    assert r.exact_expectation == pytest.approx(r.exact_closed_form, rel=1e-12)
    z = (r.mc_dropout - r.closed_dropout) / r.mc_dropout_se
    assert np.abs(z).max() < 4.5
    np.testing.assert_allclose(r.w_scaled, r.w_tikhonov, rtol=1e-10)
    np.testing.assert_allclose(r.w_trained, r.w_dropout, atol=0.02)
    assert not np.allclose(r.w_dropout, r.w_tikhonov, atol=0.02)  # the rescaling matters
    zg = (r.mc_gauss - r.closed_gauss) / r.mc_gauss_se
    assert np.abs(zg).max() < 4.5
    assert r.best_choice == ("mu", "sigma^2")
    assert "answer: (A) = mu, (B) = sigma^2" in experiments.report("dropout-tikhonov", r)
    experiments.plot("dropout-tikhonov", r, tmp_path / "d.png")
    assert _png(tmp_path / "d.png")


# --- 6(a) bn-graph -------------------------------------------------------------------------


def test_bn_graph(tmp_path, capsys):
    from tapegrad.experiments.bn_graph import HOMEWORK_EDGES

    r = experiments.run("bn-graph")
    assert r.edges == {
        ("X", "mu"),
        ("X", "sigma^2"),
        ("X", "Z"),
        ("mu", "Z"),
        ("sigma^2", "Z"),
        ("Z", "Y"),
        ("gamma", "Y"),
        ("beta", "Y"),
    }
    assert r.edges == HOMEWORK_EDGES
    assert {n.name for n in r.named.tensors()} == {"X", "mu", "sigma^2", "Z", "Y", "gamma", "beta"}
    assert r.n_ops > 8  # built from primitive ops, not one fused op
    if r.max_abs_diff_vs_functional is not None:
        assert r.max_abs_diff_vs_functional < 1e-10
    assert _run_cli(["bn-graph", "--plot", str(tmp_path / "g.png")]) == 0
    assert "same as the homework's edges" in capsys.readouterr().out
    assert _png(tmp_path / "g.png")


def test_bn_graph_plot_without_graphviz_falls_back_to_matplotlib(monkeypatch, tmp_path):
    from tapegrad import viz

    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    r = experiments.run("bn-graph")
    experiments.plot("bn-graph", r, tmp_path / "g.png")
    assert _png(tmp_path / "g.png")
    assert (tmp_path / "g-tape.dot").read_text().startswith("digraph")


# --- 1(c) transpose-conv -----------------------------------------------------------------


def test_transpose_conv(tmp_path):
    r = experiments.run("transpose-conv")
    np.testing.assert_array_equal(r.output, [[-1, 3, -2], [3, -3, 1], [0, 3, 1]])
    filt = np.array([[1, -1], [0, 1]])
    assert [(pos, v) for pos, v, _ in r.terms] == [
        ((0, 0), -1.0),
        ((0, 1), 2.0),
        ((1, 0), 3.0),
        ((1, 1), 1.0),
    ]
    for (i, j), v, term in r.terms:  # each term: the filter scaled and shifted to (i, j)
        expected = np.zeros((3, 3))
        expected[i : i + 2, j : j + 2] = v * filt
        np.testing.assert_array_equal(term, expected)
    np.testing.assert_array_equal(r.terms_sum, r.output)
    assert r.symbolic_1d == ["ax", "ay", "az + bx", "by", "bz + cx", "cy", "cz"]
    text = experiments.report("transpose-conv", r)
    assert "  [  -1    3   -2]\n  [   3   -3    1]\n  [   0    3    1]" in text
    experiments.plot("transpose-conv", r, tmp_path / "t.png")
    assert _png(tmp_path / "t.png")


# --- 5(a)-(h) dropout-regression -----------------------------------------------------------


def test_dropout_regression(tmp_path, one_thread):
    r = experiments.run("dropout-regression", steps_batch1=400, steps=300, gd_sweep=(0.5,))
    # (a), (b): [[1.08910891] [0.10891089]] and tensor([[1.0891, 0.1089]])
    np.testing.assert_allclose(r.ols, [1.08910891, 0.10891089], atol=5e-9)
    np.testing.assert_allclose(r.gd.weights[-1], [1.0891, 0.1089], atol=5e-5)
    # (c): x = [[20 2] [20 0] [0 2] [0 0]], w = [[0.36666667] [3.66666667]]
    np.testing.assert_array_equal(r.masked_x, [[20, 2], [20, 0], [0, 2], [0, 0]])
    np.testing.assert_array_equal(r.masked_y.ravel(), [11, 11, 11, 11])
    np.testing.assert_allclose(r.dropout_ls, [0.36666667, 3.66666667], atol=5e-9)
    # (d), (e): batch 1 is spiky, a large batch smooth and close to (c)
    from tapegrad.experiments.dropout_regression import _spikiness

    assert _spikiness(r.sgd_batch1.losses) > 5 * _spikiness(r.sgd_large.losses)
    np.testing.assert_allclose(r.sgd_large.final, r.dropout_ls, atol=0.1)
    assert abs(r.sgd_large.final[0] - 0.3667) < 0.02
    # (f): no dropout x1's term is 100x x2's; with dropout they are equal
    assert 10 * r.ols[0] / r.ols[1] == pytest.approx(100)
    assert 10 * r.dropout_ls[0] == pytest.approx(r.dropout_ls[1])
    # (g): smooth for rate > 0, jump at 0
    rates = r.sweep_rates
    assert rates[0] == 0 and np.allclose(r.sweep_closed[0], r.ols)
    np.testing.assert_allclose(r.sweep_closed[rates == 0.5][0], r.dropout_ls, atol=1e-12)
    np.testing.assert_allclose(r.limit_0plus, [0.55, 5.5], atol=1e-6)
    steps = np.abs(np.diff(r.sweep_closed[1:], axis=0)).max()
    assert np.abs(r.sweep_closed[1] - r.sweep_closed[0]).max() > 10 * steps
    np.testing.assert_allclose(r.sweep_gd[0.5], r.dropout_ls, atol=0.1)
    # (h): Adam without dropout goes to w1 ~ w2 (both ~1); with dropout to (c)
    w = r.adam_no_dropout.weights[-1]
    assert abs(w[0] - w[1]) < 0.02 and abs(10 * w[0] + w[1] - 11) < 0.01
    np.testing.assert_allclose(r.adam_dropout.final, r.dropout_ls, atol=0.1)
    text = experiments.report("dropout-regression", r)
    assert "= [1.0891, 0.1089]" in text and "w = [0.3667, 3.6667]" in text
    assert "x = [[20, 2], [20, 0], [0, 2], [0, 0]]" in text
    experiments.plot("dropout-regression", r, tmp_path / "r.png")
    assert _png(tmp_path / "r.png")


@pytest.mark.slow
def test_dropout_regression_full_run(one_thread):
    r = experiments.run("dropout-regression")
    for rate, w in r.sweep_gd.items():
        np.testing.assert_allclose(w, r.sweep_closed[r.sweep_rates == rate][0], atol=0.1)


# --- 5(i) dropout-cheating -----------------------------------------------------------------


def test_dropout_cheating(tmp_path, one_thread):
    r = experiments.run("dropout-cheating")
    none, drop = r.models["no dropout"], r.models["dropout 0.5"]
    assert r.n_train == 3000 and r.n_test == 2000
    assert none.train_acc > 0.99  # the cheating feature fits training perfectly
    # dropout raises test accuracy on clean data ...
    assert drop.test_acc_clean > none.test_acc_clean + 0.03
    assert drop.test_acc_clean > 0.7
    # ... and the model relies less on the cheating feature, though still heavily
    assert drop.cheat_weight < none.cheat_weight
    assert drop.follows_cheat < none.follows_cheat
    assert drop.cheat_weight > 2 * drop.pixel_weight
    assert drop.follows_cheat > 0.1  # chance of following a wrong class by luck is ~0.1x0.1
    assert "with dropout (higher)" in experiments.report("dropout-cheating", r)
    experiments.plot("dropout-cheating", r, tmp_path / "c.png")
    assert _png(tmp_path / "c.png")


# --- 9 bn-distribution ---------------------------------------------------------------------


def test_bn_distribution(tmp_path):
    r = experiments.run("bn-distribution", n=50_000)
    s = r.stats_1d
    assert s["mean_before"] == pytest.approx(1.5, abs=0.01)
    assert s["var_before"] == pytest.approx(0.16, abs=0.005)
    # centred at beta = 3 with standard deviation gamma = 1 (batch statistics: exact)
    assert s["mean_after"] == pytest.approx(3.0, abs=1e-4)
    assert s["var_after"] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(r.mean_after, [0, 0], atol=1e-4)
    np.testing.assert_allclose(np.diag(r.cov_after), [1, 1], atol=1e-3)
    assert r.corr_after == pytest.approx(r.corr_before, abs=1e-4)  # not whitened
    assert r.corr_before == pytest.approx(0.75, abs=0.01)
    for before, after, expected in zip(
        r.inside_before, r.inside_after, (1 - np.exp(-0.5), 1 - np.exp(-2))
    ):
        assert after == pytest.approx(before, abs=1e-3)
        assert after == pytest.approx(expected, abs=0.01)
    text = experiments.report("bn-distribution", r)
    assert "after   3.000     1.000  1.000" in text
    experiments.plot("bn-distribution", r, tmp_path / "n.png")
    assert _png(tmp_path / "n.png")


# --- 6(c) dropout-overfit ------------------------------------------------------------------


def test_dropout_overfit_short(tmp_path, one_thread):
    r = experiments.run("dropout-overfit", epochs=15)
    none, drop = r.curves["no dropout"], r.curves["dropout 0.5"]
    assert len(none.train_acc) == len(drop.val_acc) == 15
    assert none.val > 0.6 and drop.val > 0.6  # well above chance (0.1)
    assert drop.gap < none.gap
    assert "with dropout (smaller)" in experiments.report("dropout-overfit", r)
    experiments.plot("dropout-overfit", r, tmp_path / "o.png")
    assert _png(tmp_path / "o.png")


@pytest.mark.slow
def test_dropout_overfit_full_run(one_thread):
    r = experiments.run("dropout-overfit")
    none, drop = r.curves["no dropout"], r.curves["dropout 0.5"]
    assert np.mean(none.train_acc[-3:]) > 0.97  # memorised
    assert drop.gap < none.gap - 0.05
    assert drop.val > none.val
