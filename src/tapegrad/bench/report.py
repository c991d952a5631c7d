"""Output of a bench run: the terminal table, the JSON file, the PNG (roofline + bars),
and the comparison of two JSON files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

SCHEMA = "tapegrad-bench/1"


def _ms(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:.0f}"


def _cell_check(r: dict) -> str:
    if r.get("agree") is None:
        return "-"
    return "ok" if r["agree"] else f"WRONG ({r['max_err']:.1e})"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def machine_line(machine: dict) -> str:
    """The table's first line: CPU, cores, threads, the measured limits, library versions."""
    v = machine.get("versions", {})
    return (
        f"{machine.get('cpu')} ({machine.get('cores')} cores), {machine.get('threads')} threads"
        + (f" ({machine['threads_source']})" if machine.get("threads_source") else "")
        + "; "
        f"float32 GEMM {machine.get('gemm_gflops', 0):.1f} GFLOP/s (np.matmul "
        f"{machine.get('gemm_n')}^2), copy {machine.get('copy_gbps', 0):.1f} GB/s "
        f"(np.copyto); numpy {v.get('numpy')}, numba {v.get('numba')}, cython {v.get('cython')}"
        + (f", torch {v.get('torch')}" if machine.get("torch_threads") else "")
        + _blas_note(machine)
    )


def _blas_note(machine: dict) -> str:
    def kinds(libs: list[dict] | None) -> str:
        return "/".join(sorted({f"{b['internal_api']} {b['architecture']}" for b in libs or []}))

    note = f"; BLAS {kinds(machine['blas'])}" if machine.get("blas") else ""
    if machine.get("torch_blas"):
        note += f" (PyTorch's process: {kinds(machine['torch_blas'])})"
    return note


def format_table(results: list[dict], machine: dict) -> str:
    """The terminal table: one row per (op, case, variant, direction)."""
    with_torch = any("torch_s" in r for r in results)
    headers = [
        "op",
        "case",
        "variant",
        "dir",
        "median ms",
        "IQR",
        "JIT s",
        "rate",
        "of limit",
        "check",
    ]
    if with_torch:
        headers[-1:-1] = ["torch ms", "ratio"]
    rows = []
    prev = None
    for r in results:
        key = (r["op"], r["case"])
        op, case = (r["op"], r["case"]) if key != prev else ("", "")
        prev = key
        variant = r["variant"]
        if r.get("chosen") and r["chosen"] != variant:
            variant += f" ({r['chosen']})"
        if "error" in r:
            rows.append(
                [op, case, variant, "-", "error: " + r["error"][:60]] + [""] * (len(headers) - 5)
            )
            continue
        frac = r.get("fraction")
        row = [
            op,
            case,
            variant,
            r["direction"],
            _ms(r["median_s"]),
            f"{100 * r['spread']:.0f}%",
            f"{r['jit_s']:.2f}",
            f"{r['rate']:.1f} {r['unit']}",
            "-" if frac is None else f"{100 * frac:.0f}%",
        ]
        if with_torch:
            ratio = r.get("ratio")
            row += [_ms(r.get("torch_s")), "-" if ratio is None else f"{ratio:.2f}"]
        row.append(_cell_check(r))
        rows.append(row)
    right = {4, 5, 6, 7, 8} | ({9, 10} if with_torch else set())
    return machine_line(machine) + "\n" + _table(headers, rows, right)


def write_json(path: str | Path, results: list[dict], machine: dict, config: dict) -> None:
    """Write a run (machine, config, results) to ``path`` as JSON."""
    doc = {"schema": SCHEMA, "machine": machine, "config": config, "results": results}
    Path(path).write_text(json.dumps(doc, indent=1, default=_jsonable))


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def read_json(path: str | Path) -> dict:
    """A JSON file written by :func:`write_json`.

    Raises
    ------
    ValueError
        If the file has no ``results``.
    """
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or "results" not in doc:
        raise ValueError(f"bench: {path} is not a bench JSON file (no 'results')")
    return doc


def compare(a: dict, b: dict) -> str:
    """Per-case ratio of B's median to A's (below 1: B is faster), matched on
    (op, case, variant, direction), with the geometric mean of the ratios."""

    def key(r: dict) -> tuple:
        return (r["op"], r["case"], r["variant"], r["direction"])

    old = {key(r): r for r in a["results"] if "median_s" in r}
    rows, logs = [], []
    for r in b["results"]:
        if "median_s" not in r or key(r) not in old:
            continue
        ra, rb = old[key(r)]["median_s"], r["median_s"]
        ratio = rb / ra if ra > 0 else math.inf
        if math.isfinite(ratio) and ratio > 0:
            logs.append(math.log(ratio))
        verdict = "faster" if ratio < 0.95 else "slower" if ratio > 1.05 else "same"
        rows.append(
            [
                r["op"],
                r["case"],
                r["variant"],
                r["direction"],
                _ms(ra),
                _ms(rb),
                f"{ratio:.2f}",
                verdict,
            ]
        )
    headers = ["op", "case", "variant", "dir", "A ms", "B ms", "B/A", ""]
    out = ""
    for name, doc in (("A", a), ("B", b)):
        if doc.get("machine"):
            out += f"{name}: {machine_line(doc['machine'])}\n"
    out += _table(headers, rows, {4, 5, 6})
    if logs:
        gmean = math.exp(sum(logs) / len(logs))
        out += f"\n{len(rows)} matched cases; geometric mean B/A = {gmean:.3f}"
    else:
        out += "\nno matching cases between the two files"
    return out


def plot(path: str | Path, results: list[dict], machine: dict) -> None:
    """PNG: left, a roofline (arithmetic intensity vs attained GFLOP/s, with the measured
    GEMM and copy ceilings); right, bars of each variant's attained fraction of its limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "median_s" in r and r.get("intensity")]
    peak, bw = machine["gemm_gflops"], machine["copy_gbps"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(15, 6), gridspec_kw={"width_ratios": [1, 1.4]})

    variants = sorted({r["variant"] for r in ok})
    colors = {v: plt.cm.tab20(i % 20) for i, v in enumerate(variants)}
    colors["torch"] = (0.0, 0.0, 0.0, 1.0)
    markers = {"forward": "o", "backward": "s", "both": "^"}
    xs = [r["intensity"] for r in ok] or [1.0]
    lo, hi = min(xs) / 3, max(max(xs) * 3, 2 * peak / bw)
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peak, bw * x) for x in grid], "k-", lw=1.5)
    ax.axhline(peak, color="k", ls=":", lw=0.8)
    # the ceiling's label at the left, where no op sits (the GEMM-bound ops are on the right)
    ax.text(grid[0] * 1.1, peak * 1.08, f"GEMM {peak:.0f} GFLOP/s", ha="left", va="bottom")
    ax.text(grid[0] * 1.1, bw * grid[0] * 1.25, f"copy {bw:.0f} GB/s", rotation=0, va="bottom")
    for r in ok:
        ax.scatter(
            r["intensity"],
            r["gflops"],
            color=colors[r["variant"]],
            marker=markers.get(r["direction"], "o"),
            s=36,
            alpha=0.85,
            edgecolors="none",
        )
        if r.get("torch_s"):
            ax.scatter(
                r["intensity"],
                r["flops"] / r["torch_s"] / 1e9,
                color=colors["torch"],
                marker=markers.get(r["direction"], "o"),
                s=36,
                facecolors="none",
            )
    placed: list[tuple[float, float]] = []  # label anchors, in decades
    for op in sorted({r["op"] for r in ok}):
        pts = [r for r in ok if r["op"] == op]
        best = max(pts, key=lambda r: r["gflops"])
        x, y = math.log10(best["intensity"]), math.log10(max(best["gflops"], 1e-12))
        # ops of one family sit close together: stack their labels instead of overprinting
        near = sum(1 for px, py in placed if abs(px - x) < 0.5 and abs(py - y) < 0.15)
        placed.append((x, y))
        ax.annotate(
            op,
            (best["intensity"], best["gflops"]),
            fontsize=7,
            xytext=(4, 4 - 9 * near),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("attained GFLOP/s")
    ax.set_title("roofline (o forward, s backward, ^ both; hollow: torch)")
    handles = [plt.Line2D([], [], color=colors[v], marker="o", ls="") for v in variants]
    if any(r.get("torch_s") for r in ok):
        handles.append(
            plt.Line2D([], [], color=colors["torch"], marker="o", ls="", markerfacecolor="none")
        )
    labels = [*variants, *(["torch"] if len(handles) > len(variants) else [])]
    ax.legend(handles, labels, fontsize=7, ncol=2, loc="lower right")

    # bars: fraction of the op's limit, one group per (op, case) in one direction:
    # forward + backward where it was timed, else forward
    dirs: dict[tuple, set] = {}
    for r in ok:
        dirs.setdefault((r["op"], r["case"]), set()).add(r["direction"])
    groups: dict[tuple, dict[str, float]] = {}
    for r in ok:
        have = dirs[(r["op"], r["case"])]
        shown = "both" if "both" in have else "forward" if "forward" in have else "backward"
        if r.get("fraction") is None or r["direction"] != shown:
            continue
        g = groups.setdefault((r["op"], r["case"], shown), {})
        g[r["variant"]] = 100 * r["fraction"]
        if r.get("torch_s"):
            limit = r.get("limit") or (peak if r["kind"] == "flops" else bw)
            unit = r["flops"] if r["kind"] == "flops" else r["bytes"]
            g["torch"] = 100 * unit / r["torch_s"] / 1e9 / limit
    names = [v for v in [*variants, "torch"] if any(v in g for g in groups.values())]
    width = 0.8 / max(1, len(names))
    for j, v in enumerate(names):
        xs_ = [i + (j - (len(names) - 1) / 2) * width for i in range(len(groups))]
        bx.bar(xs_, [g.get(v, 0.0) for g in groups.values()], width, label=v, color=colors[v])
    bx.set_xticks(range(len(groups)))
    bx.set_xticklabels(
        [f"{op} ({d})\n{case}" for op, case, d in groups], rotation=60, ha="right", fontsize=6
    )
    bx.set_yscale("log")  # memory-bound ops sit orders of magnitude below the GEMM-bound ones
    bx.set_ylabel("% of measured limit (GEMM or copy)")
    bx.set_title("attained fraction of the machine's limit per variant (forward + backward)")
    bx.legend(fontsize=7, ncol=2)
    fig.suptitle(machine_line(machine).replace("; ", "\n", 1), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=110)
    plt.close(fig)
