"""The benchmark's terminal table and plot, from the report that ``bench_dense.run`` returns."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import median
from typing import Any

from ._timing import require

__all__ = ["blas_summary", "format_table", "plot"]

_COLORS = {"dense_xp": "C0", "floor": "black", "naive": "C2", "torch": "C3"}
_MARKERS = {"relu": "o", "sigmoid": "s", "linear": "^", None: "x"}


def blas_summary(pools: list[dict[str, Any]]) -> str:
    """One line per thread pool that threadpoolctl found (BLAS kernel, version, threads)."""
    parts = []
    for pool in pools:
        extra = ", ".join(str(pool[k]) for k in ("architecture", "threading_layer") if pool.get(k))
        parts.append(
            f"{pool['internal_api']} {pool.get('version') or ''} ({extra + ', ' if extra else ''}"
            f"{pool['num_threads']} threads, {pool['prefix']})"
        )
    return "; ".join(parts) or "none found"


def _source(src: dict[str, Any] | None) -> str:
    if not src:
        return ""
    return f" (commit {src['commit'][:10]}{', with uncommitted changes' if src['modified'] else ''})"


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return r["impl"], r["n"], r["d_in"], r["d_out"], r["dtype"], r["activation"]


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}" if v < 0.01 else f"{v:.3f}" if v < 100 else f"{v:.1f}"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(report: dict[str, Any]) -> str:
    """The terminal table: ms per step, ratios of dense_xp to the others, peak memory in activations."""
    m, s = report["machine"], report["settings"]
    by_key = {_key(r): r for r in report["measurements"]}
    torch = m.get("torch")
    lines = [
        f"dense_xp {m['versions']['dense_xp']}{_source(m.get('dense_xp_source'))}: one training step "
        f"(forward + backward + SGD, lr=0.01) on {s['device']}, {m['date']}",
        f"CPU: {m['cpu_model']}; {m['cpu_count']} CPUs, {s['threads']} threads for every library",
        f"{m['platform']}; NumPy {m['versions']['numpy']} BLAS: "
        + blas_summary([p for p in m["blas"] if p["user_api"] == "blas"]),
    ]
    if torch:
        lines.append(
            f"torch {torch['version']}: BLAS {torch['blas']}, CPU capability {torch['cpu_capability']}"
        )
    if "gpu" in m:
        g = m["gpu"]
        lines.append(
            f"GPU: {', '.join(g['devices'])}; CuPy {g['cupy']}, CUDA runtime {g['cuda_runtime']}, "
            f"driver {g['cuda_driver']}"
        )
    lines.append(
        f"load average (1/5/15 min) at start {m.get('loadavg_at_start')}, at end {m.get('loadavg_at_end')}"
    )
    busy = [b for r in report["measurements"] for b in r.get("cpu_busy_before", [])]
    if busy:
        lines.append(
            f"CPUs busy with other processes before each pass (of {len(busy)}): median {median(busy):.0%}, "
            f"max {max(busy):.0%}; {sum(b >= 0.3 for b in busy)} passes began at 30% or more"
        )
    lines += [
        "ms: median time per step; x/floor etc.: dense_xp time / that time (below 1: dense_xp is faster);",
        "mem: peak extra memory of one step, in activations (n*d_out*itemsize); floor = 3 bare matmuls",
        "",
    ]
    head = (
        f"{'shape':<17} {'dtype':<8} {'act':<8} {'dense_xp':>9} {'floor':>9} {'naive':>9} {'torch':>9}"
        f" {'x/floor':>8} {'x/naive':>8} {'x/torch':>8}   "
        f"{'mem dx':>6} {'floor':>6} {'naive':>6} {'torch':>6}"
    )
    lines += [head, "-" * len(head)]
    for n, d_in, d_out in report["shapes"]:
        for dtype in s["dtype"]:
            for act in s["activation"]:
                rows = {
                    impl: by_key.get((impl, n, d_in, d_out, dtype, None if impl == "floor" else act), {})
                    for impl in ("dense_xp", "floor", "naive", "torch")
                }
                ms = {impl: r.get("ms") for impl, r in rows.items()}
                mem = {impl: r.get("peak_activations") for impl, r in rows.items()}
                ratio = {
                    impl: ms["dense_xp"] / ms[impl] if ms["dense_xp"] and ms[impl] else None
                    for impl in ("floor", "naive", "torch")
                }
                lines.append(
                    f"{f'{n}x{d_in}->{d_out}':<17} {dtype:<8} {act:<8}"
                    + "".join(f" {_ms(ms[i]):>9}" for i in ms)
                    + "".join(f" {_num(ratio[i], '.2f'):>8}" for i in ratio)
                    + "  "
                    + "".join(f" {_num(mem[i], '.1f'):>6}" for i in mem)
                )
    lines += ["", *[f"note: {note}" for note in report["notes"]]]
    return "\n".join(lines)


def _minor_label(value: float, _pos: Any = None) -> str:
    """Labels for the minor ticks of a log axis: 0.2, 0.3, 0.5, 2, 3, 5, 20... (by the leading digit)."""
    return f"{value:g}" if value > 0 and f"{value:.0e}"[0] in "235" else ""


def plot(report: dict[str, Any], path: Path) -> None:
    """Two panels against the shapes (log time axes): ms per step, and time / floor time."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    ok = [r for r in report["measurements"] if "ms" in r]
    dtypes = report["settings"]["dtype"]
    styles = dict(zip(dtypes, ["-", "--", ":", "-."], strict=False))
    index = {tuple(shape): i for i, shape in enumerate(report["shapes"])}  # sorted by FLOPs
    pos = lambda r: index[r["n"], r["d_in"], r["d_out"]]
    floor = {_key(r)[1:5]: r["ms"] for r in ok if r["impl"] == "floor"}
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        groups[r["impl"], r["dtype"], r["activation"]].append(r)
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(14, 6.5))
    for (impl, dtype, act), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rs.sort(key=pos)
        style = {"color": _COLORS[impl], "ls": styles.get(dtype, "-"), "marker": _MARKERS.get(act, "x")}
        label = f"{impl} {dtype}" + (f" {act}" if act else "")
        ax_t.plot([pos(r) for r in rs], [r["ms"] for r in rs], label=label, **style)
        with_floor = [r for r in rs if _key(r)[1:5] in floor]
        if impl != "floor" and with_floor:
            ax_r.plot(
                [pos(r) for r in with_floor], [r["ms"] / floor[_key(r)[1:5]] for r in with_floor], **style
            )
    ax_r.axhline(1.0, color="black", lw=0.8)
    shapes = report["shapes"]
    labels = [f"{n}x{i}\n\u2192{o}" for n, i, o in shapes]
    for ax in (ax_t, ax_r):
        ax.set_yscale("log")
        ax.set_xticks(range(len(shapes)), labels)
        ax.set_xlabel("batch x d_in \u2192 d_out (in order of FLOPs per step)")
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_ylabel("ms per training step (median)")
    ax_t.set_title("time per step")
    ax_r.set_ylabel("time / floor (the three bare matmuls)")
    ticker = matplotlib.ticker
    ax_r.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax_r.yaxis.set_minor_formatter(ticker.FuncFormatter(_minor_label))
    ax_r.set_title("ratio to the floor (1 = nothing but matmuls)")
    m, s = report["machine"], report["settings"]
    on = ", ".join(m["gpu"]["devices"]) if "gpu" in m else f"{m['cpu_model']}, {s['threads']} threads"
    fig.suptitle(
        f"dense_xp {m['versions']['dense_xp']} training step on {s['device']} ({on}), {m['date'][:10]}"
    )
    handles, names = ax_t.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05 + 0.03 * ((len(names) + 3) // 4), 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
