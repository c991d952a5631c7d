"""Tensor basics: dtypes, attributes, operators, creation, shape ops."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg


def test_default_dtypes():
    assert tg.tensor([1.0, 2.0]).dtype == np.float32
    assert tg.tensor(np.zeros(2)).dtype == np.float64
    assert tg.tensor([1, 2]).dtype == np.int64
    assert tg.randn(2, 3).dtype == np.float32
    assert tg.zeros(2, dtype=np.float64).dtype == np.float64


def test_scalar_ops_keep_float32():
    x = tg.ones(3)
    for y in (x * 2.5, 2.5 * x, x / 3, x - 1, 1 - x, x**2, x + np.float64(1)):
        assert y.dtype == np.float32


def test_attributes_and_item():
    x = tg.arange(6).reshape(2, 3)
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6
    assert x.sum().item() == 15
    with pytest.raises(ValueError, match="item"):
        x.item()
    d = tg.randn(2, requires_grad=True)
    assert not d.detach().requires_grad


def test_int_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating"):
        tg.tensor([1, 2], requires_grad=True)


def test_shape_ops_round_trip(rng):
    a = rng.standard_normal((2, 3, 4))
    x = tg.tensor(a)
    np.testing.assert_array_equal(x.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(x.transpose(0, 2).numpy(), a.swapaxes(0, 2))
    np.testing.assert_array_equal(x.flatten(1).numpy(), a.reshape(2, 12))
    np.testing.assert_array_equal(x.unsqueeze(1).numpy(), a[:, None])
    np.testing.assert_array_equal(x.unsqueeze(1).squeeze(1).numpy(), a)
    np.testing.assert_array_equal(x[1, :, 1:3].numpy(), a[1, :, 1:3])
    with pytest.raises(ValueError, match="permute"):
        x.permute(0, 0, 1)


def test_manual_seed_reproduces():
    tg.manual_seed(3)
    a = tg.randn(5).numpy()
    tg.manual_seed(3)
    np.testing.assert_array_equal(a, tg.randn(5).numpy())


def test_import_compiles_nothing_and_loads_no_heavy_library():
    # what import costs is shown by `python -X importtime`, not timed here: a busy machine
    # would make a time bound flaky. What must hold is structural: no compiler, no kernel
    # module, no optional extra is loaded by `import tapegrad`.
    import subprocess
    import sys

    heavy = ["numba", "llvmlite", "torch", "matplotlib", "scipy", "onnx", "onnxruntime", "PIL"]
    code = (
        "import sys, tapegrad; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(heavy)!r})); "
        "print(sorted(m for m in sys.modules if m.startswith('tapegrad.kernels.') "
        "and m.rsplit('.', 1)[1].endswith(('_numba', '_cy'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"]


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="positive"):
        tg.set_num_threads(0)
    before = tg.get_num_threads()
    tg.set_num_threads(1)
    assert tg.get_num_threads() == 1
    tg.set_num_threads(before)


def test_repr_mentions_grad():
    assert "requires_grad=True" in repr(tg.ones(2, requires_grad=True))


def test_env_thread_count_reaches_every_pool_before_the_first_kernel():
    import subprocess
    import sys

    code = (
        "import tapegrad as tg, tapegrad.nn.functional as F, numba\n"
        "from threadpoolctl import threadpool_info\n"
        "F.conv2d(tg.randn(1, 1, 5, 5), tg.randn(1, 1, 3, 3))\n"
        "from tapegrad.kernels.parallel import get_omp_threads\n"
        "blas = {i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}\n"
        "print(sorted(blas), numba.get_num_threads(), get_omp_threads())"
    )
    env = {**__import__("os").environ, "TAPEGRAD_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    # BLAS, Numba and tapegrad's own OpenMP runtime; an OpenMP runtime that another library
    # (or Numba's omp layer) loaded keeps its own count: tapegrad does not set it
    assert out.stdout.split() == ["[1]", "1", "1"]


@pytest.mark.parametrize(
    "name",
    ["nn", "optim", "data", "zoo", "checkpoint", "viz", "bench", "train", "lr_scheduler",
     "distributed", "experiments", "save", "load"],
)  # fmt: skip
def test_submodules_load_on_attribute_access(name):
    assert getattr(tg, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'schedulers'"):
        tg.schedulers  # noqa: B018
