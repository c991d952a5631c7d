"""Autotune's timing race: which of an op's candidate variants runs a call fastest.

Pure measurement: it is given the candidates, a way to load each, and the call to time
(the op's :meth:`~tapegrad.kernels.calls.KernelCall.trial`); it neither selects, stores
nor records (``registry`` does the first, ``store`` keeps the winners).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType

_TRIAL_MIN, _TRIAL_MAX = 15, 41  # timed rounds over the surviving candidates
_TRIAL_BUDGET_S = 0.1  # short kernels get more rounds, up to about this much per candidate
_TRIAL_PRUNE = 3.0  # after 3 rounds, drop candidates whose best is this much slower (below)
_TRIAL_CLOSE = 1.05  # a closer race than this gets _TRIAL_EXTRA times the rounds
_TRIAL_EXTRA = 3
_TRIAL_FINAL = 1.25  # candidates this close to the leader race again, alone


def team(variant: str) -> str:
    """The thread team a variant's parallel loops run on, from its name: ``cython``
    (tapegrad's own OpenMP runtime, whose idle threads sleep), ``numba`` (Numba's threading
    layer, by default the system OpenMP runtime, whose idle threads spin for a while after
    each parallel loop) or ``other`` (NumPy and its BLAS, plugins).

    Timing a kernel of one team right after a kernel of another shares the cores with the
    other team's spinning threads; autotune and ``bench`` time each team's variants
    together, the teams in turn.
    """
    for name in ("cython", "numba"):
        if variant.endswith("-" + name):
            return name
    return "other"


def teams(names: list) -> list[list]:
    """``names`` split by :func:`team` (of the name, or of an item's first element), in
    order of first appearance, each group keeping the items' order."""
    groups: dict[str, list] = {}
    for item in names:
        groups.setdefault(team(item if isinstance(item, str) else item[0]), []).append(item)
    return list(groups.values())


def time_candidates(
    names: list[str], get: Callable[[str], ModuleType], trial: Callable[[ModuleType], object]
) -> str:
    """The candidate of ``names`` (``reference`` is never timed) that is fastest in most
    rounds, by the median of its round times over the round's fastest.

    A round runs every candidate once, each round starting one candidate later than the
    last: no candidate always runs right after the one that just evicted the caches. The
    candidates of one thread team (:func:`team`) run together in a round, the teams in
    turn, with one untimed call at the switch: a Cython kernel timed while Numba's idle
    threads still spin would be billed for them.

    Judging each time against its own round cancels load from other processes that
    drifts over the tuning, and the median (not the minimum) ignores the rounds where a
    parallel kernel's threads waited for a core: on a shared 2-core machine the best of a
    few samples picked the variant that was lucky once over the one that is faster most
    of the time. A close race (within 5%) gets three times the rounds before it is called.
    """
    names = [n for n in names if n != "reference"]
    if not names:
        return "reference"
    mods = {n: get(n) for n in names}
    for mod in mods.values():
        trial(mod)  # warm-up, includes any JIT compilation
    times: dict[str, list[float]] = {n: [] for n in names}
    last = [team(names[-1])]  # the team of the call before: the warm-ups ran in order

    def rounds(alive: list[str], count: int) -> None:
        for _ in range(count):
            r = len(times[alive[0]])
            groups = teams(alive)
            if r % 2:  # the team that ended the last round starts this one
                groups.reverse()
            for group in groups:
                k = r % len(group)
                for n in group[k:] + group[:k]:
                    if team(n) != last[0]:
                        trial(mods[n])  # untimed: the other team's idle threads settle
                        last[0] = team(n)
                    t0 = time.perf_counter()
                    trial(mods[n])
                    times[n].append(time.perf_counter() - t0)

    def scores(alive: list[str]) -> list[tuple[float, str]]:
        best = [min(ts) for ts in zip(*(times[n] for n in alive))]  # per round
        out = []
        for n in alive:
            rel = sorted(t / max(b, 1e-12) for t, b in zip(times[n], best))
            out.append((rel[len(rel) // 2], n))
        return sorted(out)

    rounds(names, 3)
    # a best of three already 3x the typical time of the fastest: not a contender (the
    # kernels that lose by that much lose by 10-100x, and long trials of them would
    # dominate the tuning). A candidate's best, not its median, for this cut: a first call
    # that grows a workspace or wakes a thread team is slow once or twice, and a median of
    # three dropped the eventual winner; the others' typical (median) time, so one lucky
    # sample cannot drop everyone else.
    typical = min(sorted(times[n])[1] for n in names)
    alive = [n for n in names if min(times[n]) <= _TRIAL_PRUNE * typical]
    if len(alive) == 1:
        return alive[0]
    fastest = min(min(times[n]) for n in alive)
    total = int(min(_TRIAL_MAX, max(_TRIAL_MIN, _TRIAL_BUDGET_S / max(fastest, 1e-9))))
    rounds(alive, total - 3)
    lead = scores(alive)
    # the final: the candidates within 25% of the leader, on fresh samples among themselves
    # alone. A slow candidate between them evicts the caches and lets the thread team fall
    # asleep, and it does so unevenly: next to much slower direct convolutions the order of
    # im2col-cython and im2col-numba came out reversed against a final among themselves.
    finalists = [n for r, n in lead if r <= _TRIAL_FINAL * lead[0][0]]
    if len(finalists) == 1:
        return finalists[0]
    for n in finalists:
        times[n] = []
    rounds(finalists, total)
    lead = scores(finalists)
    if lead[1][0] / lead[0][0] < _TRIAL_CLOSE:
        rounds(finalists, (_TRIAL_EXTRA - 1) * total)
        lead = scores(finalists)
    return lead[0][1]
