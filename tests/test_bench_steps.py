"""The training-step timing worker (``tapegrad.bench.steps``): one JSON line per model, so
one process can time several models in turn for the comparison benchmarks."""

from __future__ import annotations

import json

import tapegrad as tg
from tapegrad.bench import steps


def test_worker_times_several_models_in_turn(capsys):
    before = tg.get_num_threads()
    try:
        steps.main(
            ["--side", "tapegrad", "--model", "lenet5,conv_autoencoder", "--threads", "1"]
            + ["--batch", "2", "--warmup", "0", "--steps", "2"]
        )
    finally:
        tg.set_num_threads(before)
    lines = [json.loads(s) for s in capsys.readouterr().out.strip().splitlines()]
    assert [r["model"] for r in lines] == ["lenet5", "conv_autoencoder"]
    for r in lines:
        assert r["side"] == "tapegrad" and r["threads"] == 1
        assert len(r["steps_s"]) == 2 and all(t > 0 for t in r["steps_s"])
