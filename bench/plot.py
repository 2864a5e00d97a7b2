"""Plots bench/run's results: throughput and latency percentiles per
system, one row per scenario. Run by bench/run with bench/.venv's Python:

    bench/.venv/bin/python bench/plot.py bench/results.json bench/results.png
"""

import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCENARIOS = [
    ("hello", "hello"),
    ("db-read", "db-read: one row by primary key → JSON, through a tunnel"),
    ("login", "login: POST /api/token/ (PBKDF2, 1.2M iterations)"),
    ("list", "authenticated list of 20 items"),
    ("swap", "hot swap: steady vs a new version every second"),
]
PERCENTILES = [("p50", "p50"), ("p90", "p90"), ("p99", "p99")]


def color(system):
    if system == "burrow":
        return "#d9480f"
    if system.startswith("wasmtime"):
        return "#5f3dc4"
    if system.startswith("native"):
        return "#1971c2"
    if system.startswith("burrow"):
        return "#d9480f" if "steady" in system else "#f08c00"
    if "gunicorn" in system:
        return "#087f5b" if "=0)" in system else "#2f9e44"
    return "#74b816"


def short(system):
    return (system.replace("native hyper + mysql_async", "native hyper\n+ mysql_async")
            .replace("Django + gunicorn (CONN_MAX_AGE=", "Django\ngunicorn\nMAX_AGE=").replace(")", "")
            .replace("Django runserver", "Django\nrunserver").replace("burrow, ", "burrow,\n"))


def main(src, dst):
    r = json.load(open(src))
    fig, axes = plt.subplots(len(SCENARIOS) + 1, 2, figsize=(13, 4.2 * (len(SCENARIOS) + 1)),
                             gridspec_kw={"width_ratios": [1, 1.3]})
    for row, (key, title) in enumerate(SCENARIOS):
        data = r[key]
        names = [d["system"] for d in data]
        ax = axes[row][0]
        rps = [d["rps"] for d in data]
        bars = ax.bar(range(len(data)), rps, color=[color(n) for n in names])
        ax.set_xticks(range(len(data)), [short(n) for n in names], fontsize=8)
        ax.set_ylabel("requests/s")
        ax.set_title(f"{title}\nthroughput", fontsize=10)
        if max(rps) / max(min(rps), 1e-9) > 30:
            ax.set_yscale("log")
        for b, v in zip(bars, rps):
            ax.annotate(f"{v:.0f}" if v >= 10 else f"{v:.1f}", (b.get_x() + b.get_width() / 2, v),
                        ha="center", va="bottom", fontsize=8)
        ax = axes[row][1]
        width = 0.8 / len(data)
        for i, d in enumerate(data):
            xs = [j + (i - (len(data) - 1) / 2) * width for j in range(len(PERCENTILES))]
            ax.bar(xs, [d[p] for p, _ in PERCENTILES], width, color=color(d["system"]),
                   alpha=1.0 - 0.12 * (i % 2), label=d["system"])
        ax.set_xticks(range(len(PERCENTILES)), [label for _, label in PERCENTILES])
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms (log)")
        ax.set_title(f"{title}\nlatency percentiles ({data[0]['connections']} connections)", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(axis="y", which="major", alpha=0.3)
    res = r["resources"]
    ax = axes[-1][0]
    kinds = [("idle", "idle"), ("load_peak", "64 connections (peak)"), ("after", "after the load")]
    for i, (key, label) in enumerate(kinds):
        xs = [j + (i - 1) * 0.27 for j in range(2)]
        ax.bar(xs, [res["burrow"][key], res["django"][key]], 0.27, label=label,
               color=["#d9480f", "#2f9e44"], alpha=1.0 - 0.3 * i)
    ax.set_xticks(range(2), ["burrow", "Django gunicorn\n+ ssh -N -L"], fontsize=8)
    ax.set_ylabel("RSS, MiB")
    ax.set_title("resources: resident memory (idle / 64 connections / after)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[-1][1]
    starts = [res["burrow"]["start"], res["django"]["start"]]
    ax.bar(range(2), [statistics.median(x) for x in starts], color=["#d9480f", "#2f9e44"])
    for j, x in enumerate(starts):
        ax.plot([j] * len(x), x, "k.", markersize=5)
    ax.set_xticks(range(2), ["burrow (warm compile cache)", "Django gunicorn"], fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title("start-up to the first 200 (median bar, each run a dot)", fontsize=10)
    mode = "bench/run --quick" if r.get("quick") else "bench/run"
    fig.suptitle(f"burrow vs the alternatives, {mode}, wrk {r['seconds']} s per system, same machine", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(dst, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
