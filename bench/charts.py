"""Charts of one benchmark run, drawn from the same results the table is printed from.

``make bench`` writes them next to ``bench/results.json`` (``bench/charts/*.png``)
right after the results; ``python -m bench.charts [results.json]`` redraws them
from a results file. A figure whose section is not in the results (``--only
burst``) is skipped. Every number on a chart is one the results file holds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "bench" / "results.json"
TARGET = "#008069"
FLOOR = "#9aa5ab"
ACCENT = "#d97706"
# No timestamp or version in the files: a redraw of the same results is the same PNG.
PNG_METADATA = {"Software": None}

Results = Mapping[str, Any]


def _figure(width: float = 9.0, height: float = 4.8) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.grid(axis="x", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _subtitle(results: Results) -> str:
    machine = results.get("machine", {})
    cores = machine.get("cpu_count") or machine.get("cores")
    quick = " · QUICK RUN (tiny N)" if results.get("quick") else ""
    where = f"{cores} cores" if cores else "this machine"
    return f"one `make bench` run on {where}{quick}"


def ack_latency(results: Results, ax: Axes) -> bool:
    """Figure 1: webhook ack latency (min, p50, p99, max) against the floor, with the 1.5x-floor-p99 limit."""
    ack = results.get("ack")
    if not ack:
        return False
    scenarios = [
        ("instant model, sequential", ack["instant_ai"]["sequential"]),
        ("instant model, 8 clients", ack["instant_ai"]["concurrent"]),
        ("10 s model, sequential", ack["slow_ai"]["sequential"]),
        ("10 s model, 8 clients", ack["slow_ai"]["concurrent"]),
    ]
    labels: list[str] = []
    y = 0.0
    for name, run in scenarios:
        for side, stats, colour in (("webhook_fn", run["target_ms"], TARGET), ("floor", run["floor_ms"], FLOOR)):
            ax.plot([stats["min"], stats["max"]], [y, y], color=colour, linewidth=1.2, alpha=0.6)
            ax.plot([stats["p50"], stats["p99"]], [y, y], color=colour, linewidth=7, solid_capstyle="butt")
            ax.plot(stats["p50"], y, "o", color="white", markeredgecolor=colour, markersize=6)
            ax.text(stats["max"], y, f"  p99 {stats['p99']:.1f}", va="center", fontsize=7.5, color=colour)
            labels.append(f"{name}: {side} (n={stats['n']})")
            y += 1
        limit = 1.5 * run["floor_ms"]["p99"]
        ax.plot([limit, limit], [y - 2.4, y - 0.6], color=ACCENT, linestyle="--", linewidth=1)
        y += 0.6
    ax.set_yticks([i + 0.6 * (i // 2) for i in range(len(labels))], labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms from the signed POST to its 200")
    ax.legend(
        handles=[
            Line2D([], [], color="#374151", linewidth=1.2, alpha=0.6, label="min – max"),
            Line2D([], [], color="#374151", linewidth=7, label="p50 – p99"),
            Line2D([], [], marker="o", color="white", markeredgecolor="#374151", linestyle="", label="p50"),
            Line2D([], [], color=ACCENT, linestyle="--", label="goal: 1.5 × floor p99"),
        ],
        fontsize=7.5, loc="lower right", frameon=False,
    )
    ax.set_title("1. Webhook ack latency against its floor (a bare function doing one ordered publish)", fontsize=10)
    return True


def e2e_stages(results: Results, ax: Axes) -> bool:
    """Figure 2: where the end-to-end time goes, stage by stage (p50), next to the emulator-hop floor."""
    e2e = results.get("e2e")
    if not e2e:
        return False
    stages = e2e["stages_ms"]
    floor = e2e["floor"]
    rows = [
        ("pipeline (stage p50s)", [
            ("POST → webhook published", stages["webhook"]["p50"]),
            ("→ processor claimed (push, read, write)", stages["to_processor"]["p50"]),
            ("→ answered (model, write)", stages["model_and_save"]["p50"]),
            ("→ at Twilio (task, read, write, send)", stages["to_twilio"]["p50"]),
        ]),
        ("floor (hop p50s)", [
            ("publish → push delivered", floor["pubsub_publish_to_push_ms"]["p50"]),
            ("create task → dispatched", floor["tasks_create_to_dispatch_ms"]["p50"]),
            ("Firestore transaction", floor["firestore_transaction_ms"]["p50"]),
        ]),
    ]
    colours = ["#005c4b", "#25d366", "#7dd3a8", "#0ea5e9", "#6b7280", "#9ca3af", "#d1d5db"]
    index = 0
    for y, (label, parts) in enumerate(rows):
        left = 0.0
        for name, value in parts:
            ax.barh(y, value, left=left, color=colours[index % len(colours)], edgecolor="white", label=f"{name} ({value:.1f} ms)")
            left += value
            index += 1
    total = e2e["target_ms"]
    ax.barh(2, total["p50"], color=TARGET, alpha=0.35, label=f"whole trip p50 {total['p50']:.1f} ms (p99 {total['p99']:.1f})")
    ax.set_yticks([0, 1, 2], [rows[0][0], rows[1][0], f"end to end (n={total['n']})"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms (p50 of each stage; stage p50s need not add up to the whole trip's p50)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("2. End to end: POST → Twilio stand-in, by stage, against the emulator-hop floor", fontsize=10)
    return True


def throughput(results: Results, ax: Axes) -> bool:
    """Figure 3: offered against delivered messages per second, with the queue's rate cap and latency."""
    section = results.get("throughput")
    if not section or not section.get("steps"):
        return False
    steps = section["steps"]
    offered = [s["offered_rate"] for s in steps]
    delivered = [s["completion_rate"] for s in steps]
    top = max(offered + delivered) * 1.1
    ax.plot([0, top], [0, top], color=FLOOR, linestyle=":", linewidth=1, label="delivered = offered")
    cap = section.get("tasks_max_dispatches_per_second")
    if cap:
        ax.axhline(cap, color=ACCENT, linestyle="--", linewidth=1, label=f"send queue's rate limit {cap:g}/s")
    ax.plot(offered, delivered, "o-", color=TARGET, label="replies delivered per second")
    for s in steps:
        ax.annotate(f"p50 {s['latency_ms']['p50']:.0f} ms", (s["offered_rate"], s["completion_rate"]),
                    textcoords="offset points", xytext=(4, -12), fontsize=7, color="#374151")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("offered, messages per second (many users)")
    ax.set_ylabel("delivered, replies per second")
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.8)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    ax.set_title(f"3. Throughput: offered against delivered (highest sustained {section.get('highest_sustained_rate')}/s)",
                 fontsize=10)
    return True


def burst(results: Results, ax: Axes) -> bool:
    """Figure 7: others' end-to-end latency without and with one user's burst, and the burst user's own."""
    section = results.get("burst")
    if not section:
        return False
    groups = [
        (f"{section['others']} users, no burst user", section["without_burst_ms"], FLOOR),
        (f"same users, with the burst user", section["with_burst_ms"], TARGET),
        (f"the burst user's own {section['burst_messages']} messages", section["burst_user_ms"], ACCENT),
    ]
    for i, (label, stats, colour) in enumerate(groups):
        ax.barh(i - 0.18, stats["p50"], height=0.34, color=colour, alpha=0.55)
        ax.barh(i + 0.18, stats["p99"], height=0.34, color=colour)
        ax.text(stats["p50"], i - 0.18, f" p50 {stats['p50']:.0f}", va="center", fontsize=7.5)
        ax.text(stats["p99"], i + 0.18, f" p99 {stats['p99']:.0f}", va="center", fontsize=7.5)
    ax.set_yticks(range(len(groups)), [f"{g[0]} (n={g[1]['n']})" for g in groups], fontsize=8)
    ax.invert_yaxis()
    ratio = section.get("ratio_p99")
    ax.set_xlabel("ms from POST to the Twilio stand-in (light: p50, dark: p99)")
    ax.set_title(f"7. A burst of {section['burst_messages']} messages in {section['burst_seconds']:g} s from one user: "
                 f"others' p99 × {ratio if ratio is not None else '?'}", fontsize=10)
    return True


def cold_start(results: Results, ax: Axes) -> bool:
    """Figure 5: cold start of each function against the bare function."""
    section = results.get("cold_start")
    if not section:
        return False
    names = [n for n in ("webhook", "processor", "sender", "floor") if isinstance(section.get(n), Mapping)]
    if not names:
        return False
    for i, name in enumerate(names):
        stats = section[name]["first_response_ms"]
        colour = FLOOR if name == "floor" else TARGET
        ax.barh(i, stats["p50"], color=colour, xerr=[[stats["p50"] - stats["min"]], [stats["max"] - stats["p50"]]],
                error_kw={"ecolor": "#374151", "capsize": 3, "linewidth": 1})
        ax.text(stats["max"], i, f"  {stats['p50']:.0f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), [f"{n}_fn" if n != "floor" else "bare function (floor)" for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms from Popen to the first 200 (bar: p50, whiskers: min–max)")
    ax.set_title("5. Cold start against a bare functions-framework function", fontsize=10)
    return True


CHARTS: dict[str, Callable[[Results, Axes], bool]] = {
    "ack_latency": ack_latency,
    "e2e_stages": e2e_stages,
    "throughput": throughput,
    "cold_start": cold_start,
    "burst_user": burst,
}


def write_charts(results: Results, out_dir: Path) -> list[Path]:
    """Draw every chart whose section the results hold; the PNG paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, draw in CHARTS.items():
        fig, ax = _figure(12.0 if name == "e2e_stages" else 9.0)
        try:
            if not draw(results, ax):
                continue
            fig.text(0.99, 0.01, _subtitle(results), ha="right", va="bottom", fontsize=7, color="#6b7280")
            fig.tight_layout(rect=(0, 0.03, 1, 1))
            path = out_dir / f"{name}.png"
            fig.savefig(path, metadata=PNG_METADATA)
            written.append(path)
        finally:
            plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("results", type=Path, nargs="?", default=DEFAULT_RESULTS)
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default: charts/ next to the results)")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    for path in write_charts(results, args.out or args.results.parent / "charts"):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
