"""The side-by-side ratios as a chart: ``python -m benchmarks.chart RUN.log --out FILE.png``.

RUN.log is what ``python -m benchmarks.sidebyside_edge`` or the shared harness
(``../shared/sidebyside/sidebyside.py``) printed: the chart reads its ``RAW`` lines, so
it can be drawn again from a kept log. Each row is one bar, ours against workerd on a
log scale (above 1 is faster; for a time, workerd's over ours), with the line at 1.0.
The ceilings (the server with no object) are grey: a row can pass 1.0 only where its
ceiling does.

matplotlib draws it (headless, Agg): a chart library rather than PNG code of our own.
"""

import argparse
import json
from pathlib import Path

from benchmarks.sidebyside_edge import rows

AHEAD, BEHIND, CEILING = "#2e7d32", "#c62828", "#9e9e9e"


def read_run(text):
    """(workerd, {server: figures}, core, floors) from a run's printed output.

    The shared harness prints one ``RAW`` line whose "ours" is the figures of its
    daphne process and its in-process calls; this project's script prints
    ``{"workerd", "ours": {server: figures}, "core"}`` and a ``RAW floors`` line.
    """
    found, floors = None, {}
    for line in text.splitlines():
        if line.startswith("RAW floors "):
            floors = json.loads(line[len("RAW floors ") :])
        elif line.startswith("RAW "):
            found = json.loads(line[len("RAW ") :])
    if found is None:
        raise ValueError("No RAW line: pass the output of benchmarks.sidebyside_edge.")
    if "core" in found:
        return found["workerd"], found["ours"] or {}, found["core"], floors
    ours = found.get("ours") or {}  # the shared harness's own run: daphne and in-process
    return found.get("workerd"), {"daphne": ours}, ours, found.get("floors") or floors


def draw(chart_rows, out, title):
    """Write the chart of chart_rows (``sidebyside_edge.Row``s with a ratio) to out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.patches import Patch

    chart_rows = [row for row in chart_rows if row.ratio is not None]
    if not chart_rows:
        raise ValueError("No row has both figures: was workerd found in this run?")
    height = 1.2 + 0.3 * len(chart_rows)
    figure, axes = pyplot.subplots(figsize=(10, height), dpi=100)
    try:
        positions = range(len(chart_rows))[::-1]  # the first row on top
        ratios = [row.ratio for row in chart_rows]
        colours = [
            CEILING if row.ceiling else AHEAD if row.ratio >= 1 else BEHIND for row in chart_rows
        ]
        # Each bar runs from parity to its ratio: right of the line is ahead of workerd.
        widths = [value - 1 for value in ratios]
        axes.barh(list(positions), widths, left=1, color=colours, height=0.7)
        axes.set_yticks(list(positions), [row.label for row in chart_rows], fontsize=8)
        axes.set_xscale("log")
        low = min(0.25, min(ratios) / 1.5)
        high = max(2.0, max(ratios) * 2.0)
        axes.set_xlim(low, high)
        axes.axvline(1.0, color="black", linewidth=1)
        for position, value in zip(positions, ratios, strict=True):
            side = {"ha": "left"} if value >= 1 else {"ha": "right"}
            nudge = 1.04 if value >= 1 else 1 / 1.04
            axes.text(value * nudge, position, f"{value:.2f}x", va="center", fontsize=7, **side)
        ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8, 16) if low <= t <= high]
        axes.set_xticks(ticks, [f"{t:g}x" for t in ticks])
        axes.set_xlabel("ours / workerd (above 1.0 is faster; for times, workerd's / ours)")
        axes.set_title(title, fontsize=9)
        legend = [
            Patch(color=AHEAD, label="at or above workerd"),
            Patch(color=BEHIND, label="below workerd"),
            Patch(color=CEILING, label="ceiling: the server with no object"),
        ]
        axes.legend(handles=legend, loc="lower right", fontsize=7)
        figure.tight_layout()
        figure.savefig(out, format="png")
    finally:
        pyplot.close(figure)


def title_of(floors, label):
    line = "Side by side with workerd, one run on one machine"
    if floors.get("fsync"):
        line += f" (its disk: fsync {floors['fsync']:,.0f}/s)"
    return f"{line}\n{label}" if label else line


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chart")
    parser.add_argument("log", type=Path, help="the printed output of a side-by-side run")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--label", default="", help="a label for the title (the run's date)")
    options = parser.parse_args(argv)
    try:
        wd, mine, core, floors = read_run(options.log.read_text())
        chart_rows = list(rows(wd, mine, core))
        draw(chart_rows, options.out, title_of(floors, options.label))
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    shown = [row for row in chart_rows if row.ratio is not None and not row.ceiling]
    ahead = sum(row.ratio >= 1 for row in shown)
    print(f"{options.out}: {len(shown)} rows, {ahead} at or above 1.0x workerd")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
