"""Philox-4x32-10: known-answer vectors, every variant equal to the NumPy reference bit
for bit, independence from the thread count, and basic distribution checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad.kernels as K
from tapegrad.kernels.rng import key_words, philox_reference, threshold
from tests._sizes import examples

VARIANTS = K.variants("philox")
COMPILED = [v for v in VARIANTS if v != "reference"]

# Random123's kat_vectors for philox4x32 with 10 rounds: (counter, key) -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF,) * 4,
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("ctr, key, expected", KAT)
def test_reference_known_answers(ctr, key, expected):
    out = philox_reference.philox_blocks(*([c] for c in ctr), *key)
    assert tuple(int(v) for v in out[:, 0]) == expected


def test_numba_block_function_known_answers():
    pytest.importorskip("numba")
    from numba import njit

    from tapegrad.kernels.rng.philox_numba import philox

    block = njit(lambda blk, s0, s1, k0, k1: philox(blk, s0, s1, k0, k1))
    for ctr, key, expected in KAT:
        blk = np.uint64(ctr[0] | (ctr[1] << 32))
        words = [np.uint64(v) for v in (ctr[2], ctr[3], *key)]
        assert tuple(int(v) for v in block(blk, *words)) == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_stream_layout_known_answer(variant):
    # seed 0, step 0: element 64 w + j is word w of block j; block 0 is the zero KAT
    bits = K.get("philox", variant).random_bits(0, 0, 300)
    assert [int(bits[64 * w]) for w in range(4)] == list(KAT[0][2])
    # the second group starts at block 64
    ref = philox_reference.philox_blocks([64, 65], [0, 0], [0, 0], [0, 0], 0, 0)
    assert [int(bits[256]), int(bits[257])] == [int(v) for v in ref[0]]
    # seed and step of all ones: block 0 has counter (0, 0, ff.., ff..), key (ff.., ff..)
    full = (1 << 64) - 1
    ref = philox_reference.philox_blocks(
        [0], [0], [0xFFFFFFFF], [0xFFFFFFFF], *key_words(full, 0)[:2]
    )
    bits = K.get("philox", variant).random_bits(full, full, 256)
    assert [int(bits[64 * w]) for w in range(4)] == [int(v) for v in ref[:, 0]]


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(12), deadline=None)
@given(
    seed=st.integers(0, 2**64 - 1),
    step=st.integers(0, 2**64 - 1),
    n=st.integers(0, 1031),
    p=st.floats(0, 1),
)
def test_variant_matches_reference(variant, seed, step, n, p):
    mod, ref = K.get("philox", variant), K.get("philox", "reference")
    np.testing.assert_array_equal(mod.random_bits(seed, step, n), ref.random_bits(seed, step, n))
    np.testing.assert_array_equal(
        mod.bernoulli_keep(seed, step, n, p), ref.bernoulli_keep(seed, step, n, p)
    )
    # NumPy's vectorised log/cos may differ from libm in the last bit
    np.testing.assert_allclose(
        mod.normal(seed, step, n), ref.normal(seed, step, n), rtol=1e-12, atol=1e-12
    )


def test_compiled_normals_are_bit_identical():
    outs = [K.get("philox", v).normal(7, 3, 10_001) for v in COMPILED]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


@pytest.mark.parametrize("variant", COMPILED)
def test_same_stream_on_any_thread_count(variant):
    import tapegrad as tg

    mod = K.get("philox", variant)
    old = tg.get_num_threads()
    try:
        tg.set_num_threads(1)
        one = (mod.random_bits(11, 5, 50_001), mod.normal(11, 5, 50_001))
        tg.set_num_threads(2)
        two = (mod.random_bits(11, 5, 50_001), mod.normal(11, 5, 50_001))
    finally:
        tg.set_num_threads(old)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_prefix_property_and_distinct_streams():
    ref = K.get("philox", COMPILED[0] if COMPILED else "reference")
    long, short = ref.random_bits(3, 4, 1000), ref.random_bits(3, 4, 37)
    np.testing.assert_array_equal(long[:37], short)  # element i depends on i only
    assert (ref.random_bits(3, 5, 1000) != long).mean() > 0.99  # next step: new stream
    assert (ref.random_bits(4, 4, 1000) != long).mean() > 0.99  # other seed: new stream


@pytest.mark.parametrize("variant", VARIANTS)
def test_distribution(variant):
    mod = K.get("philox", variant)
    n = 200_000
    bits = mod.random_bits(2024, 1, n)
    # top 4 bits over 16 bins: chi-square with 15 dof, 99.99% quantile ~ 44
    counts = np.bincount(bits >> 28, minlength=16)
    chi2 = ((counts - n / 16) ** 2 / (n / 16)).sum()
    assert chi2 < 44, chi2
    z = mod.normal(2024, 1, n)
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.std() - 1) < 4 * np.sqrt(0.5 / n)
    for p in (0.1, 0.5, 0.9):
        keep = mod.bernoulli_keep(2024, 2, n, p)
        assert keep.dtype == np.uint8
        assert abs(keep.mean() - (1 - p)) < 4 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bernoulli_edges(variant):
    mod = K.get("philox", variant)
    assert mod.bernoulli_keep(1, 1, 1000, 0.0).all()
    assert not mod.bernoulli_keep(1, 1, 1000, 1.0).any()
    assert threshold(0.0) == 0 and threshold(1.0) == 2**32
