"""The shape rules ``auto`` uses without autotune, generated from a bench JSON.

For each op: the winner of every benchmarked case (fastest median of ``both``, else of
``forward``; only variants that agreed with ``reference``), keyed by the op's call
signature and its size (log2 of the element count), and an overall order of the variants
(most wins first, then the geometric mean of the time relative to each case's winner).
``tapegrad.kernels`` reads the file (``tapegrad.kernels.rules_path()``, in the user's cache
folder, one per machine key): an exact signature
match takes that case's winner, any other call the winner of the case nearest in size.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

SKIP = {"reference", "auto"}


def rules_from_results(doc: dict) -> dict:
    """The rules document for a bench JSON document (see the module docstring)."""
    by_case: dict[tuple, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in doc["results"]:
        if "median_s" not in r or r["variant"] in SKIP or r.get("agree") is False:
            continue
        if not r.get("signature"):
            continue
        by_case[(r["op"], r["signature"])][r["direction"]][r["variant"]] = r
    ops: dict[str, dict] = {}
    wins: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rel: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (op, sig), dirs in by_case.items():
        rows = dirs.get("both") or dirs.get("forward")
        if not rows:
            continue
        winner = min(rows, key=lambda v: rows[v]["median_s"])
        best = rows[winner]["median_s"]
        wins[op][winner] += 1
        for v, r in rows.items():
            rel[op][v].append(math.log(r["median_s"] / best) if best > 0 else 0.0)
        any_row = rows[winner]
        ops.setdefault(op, {"order": [], "cases": []})["cases"].append(
            {
                "signature": sig,
                "size": any_row.get("size") or 0.0,
                "winner": winner,
                "label": any_row["case"],
                "times_s": {v: r["median_s"] for v, r in rows.items()},
            }
        )
    for op, rule in ops.items():
        names = rel[op]
        rule["order"] = sorted(
            names, key=lambda v: (-wins[op].get(v, 0), sum(names[v]) / len(names[v]))
        )
        rule["cases"].sort(key=lambda c: c["size"])
    m = doc.get("machine", {})
    return {
        "generated_by": "python -m tapegrad bench --write-rules",
        "machine": {k: m.get(k) for k in ("cpu", "cores", "threads", "versions")},
        "ops": ops,
    }


def write_rules(doc: dict, path: str | Path | None = None) -> Path:
    """Write the rules for ``doc`` to ``path`` (default: the file ``auto`` reads),
    keeping the entries of ops this run did not measure when they were measured at the
    same thread count (``auto`` uses the rules only at the thread count they record)."""
    import tapegrad.kernels as K

    target = Path(path) if path else K.registry.rules_path()
    new = rules_from_results(doc)
    try:
        old = json.loads(target.read_text())
        # another thread count's winners are not this one's: they are replaced, not merged
        if (old.get("machine") or {}).get("threads") == new["machine"].get("threads"):
            new["ops"] = {**old.get("ops", {}), **new["ops"]}
    except (OSError, ValueError, AttributeError):
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(new, indent=1) + "\n")
    tmp.replace(target)
    K.registry.reload_rules()  # this process's auto follows the new rules at once
    return target
