"""benchmarks.chart: the side-by-side ratios, read from a run's log and drawn as a PNG."""

import json

import pytest
from PIL import Image

from benchmarks import chart
from benchmarks.sidebyside_edge import rows

WORKERD = {"seq": 2000.0, "new": 4.0, "http": 1000.0, "wsecho0": 4000.0, "bcast_p50": 4.0}
EDGE = {
    "workerd": WORKERD,
    "ours": {
        "uvicorn": {"http": 500.0, "wsecho0": 5000.0, "bcast_p50": 2.0, "floor_http_raw": 3000.0},
        "daphne": {"http": 250.0},
    },
    "core": {"seq": 3000.0, "new": 8.0},
}


def edge_log(found=EDGE, floors=None):
    lines = ["floors: fsync 5,000/s", "[uvicorn] HTTP ... 0.50x", "RAW " + json.dumps(found)]
    lines.append("RAW floors " + json.dumps(floors or {"fsync": 5000.0}))
    return "\n".join(lines) + "\n"


def by_label(chart_rows):
    return {row.label: row for row in chart_rows}


def test_edge_run_rows_and_ratios():
    wd, mine, core, floors = chart.read_run(edge_log())
    assert floors == {"fsync": 5000.0}
    found = by_label(rows(wd, mine, core))
    assert found["calls/s, 1 caller, durable write"].ratio == pytest.approx(1.5)
    # A time: workerd's over ours, so a slower new object is below 1.
    assert found["ms per new object"].ratio == pytest.approx(0.5)
    assert found["[uvicorn] HTTP req/s, Django view -> object"].ratio == pytest.approx(0.5)
    assert found["[uvicorn] WS echo msg/s (no storage)"].ratio == pytest.approx(1.25)
    assert found["[uvicorn] WS bcast 100 socks p50 ms"].ratio == pytest.approx(2.0)
    assert found["[daphne] HTTP req/s, Django view -> object"].ratio == pytest.approx(0.25)
    ceiling = found["[uvicorn] ceiling: plain ASGI answer, no object"]
    assert ceiling.ceiling and ceiling.ratio == pytest.approx(3.0)
    assert not found["[uvicorn] WS echo msg/s (no storage)"].ceiling
    # Figures the run did not measure are not rows.
    assert "[daphne] WS echo msg/s (no storage)" not in found


def test_shared_harness_run_is_read_as_daphne_and_in_process():
    ours = {"seq": 1000.0, "http": 300.0, "wsecho0_inmem": 10.0, "floor_http_plain": 500.0}
    text = "RAW " + json.dumps({"floors": {"fsync": 4000.0}, "workerd": WORKERD, "ours": ours})
    wd, mine, core, floors = chart.read_run(text)
    assert floors["fsync"] == 4000.0
    found = by_label(rows(wd, mine, core))
    assert found["calls/s, 1 caller, durable write"].ratio == pytest.approx(0.5)
    assert found["[daphne] HTTP req/s, Django view -> object"].ratio == pytest.approx(0.3)
    assert found["[daphne] ceiling: Django view, no object"].ceiling
    assert not any("InMemory" in label for label in found)


def test_main_writes_a_png_with_a_bar_per_row(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text(edge_log())
    small = tmp_path / "small.png"
    assert chart.main([str(log), "--out", str(small), "--label", "test"]) == 0
    assert small.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    # 6 rows that are not ceilings; 3 of them at or above 1.0.
    assert "6 rows, 3 at or above 1.0x workerd" in printed

    bigger = dict(EDGE, ours={**EDGE["ours"], "granian": EDGE["ours"]["uvicorn"]})
    log.write_text(edge_log(bigger))
    large = tmp_path / "large.png"
    chart.main([str(log), "--out", str(large)])
    with Image.open(small) as first, Image.open(large) as second:
        assert first.width == second.width
        assert second.height > first.height  # more rows, a taller chart


def test_a_log_without_results_is_refused_clearly(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text("floors: fsync 5,000/s\nTraceback (most recent call last):\n")
    with pytest.raises(SystemExit) as exit:
        chart.main([str(log), "--out", str(tmp_path / "x.png")])
    assert exit.value.code == 2
    assert "No RAW line" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_run_without_workerd_is_refused_clearly(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text(edge_log(dict(EDGE, workerd=None)))
    with pytest.raises(SystemExit):
        chart.main([str(log), "--out", str(tmp_path / "x.png")])
    assert "No row has both figures" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_missing_log_is_refused_clearly(tmp_path, capsys):
    with pytest.raises(SystemExit):
        chart.main([str(tmp_path / "absent.log"), "--out", str(tmp_path / "x.png")])
    assert "absent.log" in capsys.readouterr().err


def test_object_cost_is_each_request_s_time_over_its_floor():
    from benchmarks.sidebyside_edge import object_cost

    workerd = {"http": 500.0, "floor_http_plain": 1000.0}  # 2 ms against 1 ms
    mine = {
        "uvicorn": {
            "http": 400.0,  # 2.5 ms against 2 ms
            "floor_http_plain": 500.0,
            "http_pooled": 800.0,  # 1.25 ms against 1 ms
            "floor_http_pooled": 1000.0,
        },
        "daphne": {"http": 250.0, "floor_http_plain": 500.0},  # 4 ms against 2 ms
    }
    line = object_cost(workerd, mine)
    assert line.endswith(
        "workerd 1.00; uvicorn 0.50 (0.25 with durable_objects.asgi); daphne 2.00"
    )
    # A figure the run lacks is shown as "-", not an error that would lose the RAW line.
    mine["granian"] = {"http": 300.0, "http_pooled": 600.0}
    assert object_cost(None, mine).endswith("granian - (- with durable_objects.asgi)")
