"""`bench.bench_service.cell_lines`: issue 12's cells read off a bench result, with the absolute
targets scaled by the run's measured peak."""

from __future__ import annotations

from typing import Any

from bench.bench_service import cell_lines


def server(saturation: float, p99: dict[float, float], handler: float, kb: float) -> dict:
    runs = [
        {"offered_rps": rate, "p99_ms": ms, "handler_minus_ort_ms": handler}
        for rate, ms in p99.items()
    ]
    return {"open_loop": runs, "saturation": {"achieved_rps": saturation}, "response_bytes": kb}


def result(peak: float) -> dict[str, Any]:
    return {
        "gemm_peak_1_thread_gflops": peak,
        # 0.4 GFLOP in 10 ms = 40 GFLOP/s
        "ort_stage": {"500": {"flops": {"useful": 4e8}, "ms": {"fp32_ragged": 10.0}}},
        "servers": {
            "ragged": {
                "500": server(40.0, {15.0: 20.0, 30.0: 25.0}, 1.5, 90e3),
                "100": server(150.0, {50.0: 9.0}, 0.5, 20e3),
            },
            "before": {"500": server(10.0, {15.0: 900.0}, 4.0, 280e3)},
            "padded": {"500": server(38.0, {15.0: 21.0}, 1.4, 90e3)},
        },
    }


def cells(peak: float) -> dict[str, tuple[str, str, str]]:
    rows = [line.split(" | ") for line in cell_lines(result(peak)) if line.startswith("| ")]
    return {r[0][2:]: (r[1], r[2], r[3].rstrip(" |")) for r in rows[1:]}  # after the header


def test_cells_at_the_reference_peak_and_on_a_slower_core() -> None:
    ref = cells(230.0)  # 40 / 230 = 17.4% of P
    assert ref["ORT stage, share of P on useful work"] == ("17.4%", ">= 30%", "not met")
    assert ref["handler - ORT at 30 req/s"] == ("1.50 ms", "<= 2 ms", "met")
    assert ref["saturation over before"] == ("4.00x", ">= 3.5x", "met")
    # the padded server is a control beside the cells (its kernel skips padding too)
    assert ref["saturation over padded (control)"] == ("1.05x", "-", "control")
    assert ref["p99 at 30 req/s"] == ("25.0 ms", "<= 15.0 ms", "not met")
    assert ref["held"] == ("40.0 req/s", ">= 60.0 req/s", "not met")
    assert ref["default response"] == ("90.0 KB", "<= 100 KB", "met")
    assert ref["100 candidates: p99 at 50 req/s"] == ("9.0 ms", "<= 5.0 ms", "not met")
    slow = cells(115.0)  # half the peak: latency targets x 2, rate targets / 2
    assert slow["ORT stage, share of P on useful work"] == ("34.8%", ">= 30%", "met")
    assert slow["p99 at 30 req/s"] == ("25.0 ms", "<= 30.0 ms", "met")
    assert slow["held"] == ("40.0 req/s", ">= 30.0 req/s", "met")
    assert slow["100 candidates: p99 at 50 req/s"] == ("9.0 ms", "<= 10.0 ms", "met")
    no_padded = result(230.0)
    del no_padded["servers"]["padded"]
    rows = [line.split(" | ")[0][2:] for line in cell_lines(no_padded) if line.startswith("| ")]
    assert "saturation over before" in rows
    assert "saturation over padded (control)" not in rows  # no padded server in that run
    fresh = result(230.0)  # as `main` reports it before writing the JSON: C as an int
    fresh["ort_stage"] = {500: fresh["ort_stage"]["500"]}
    assert cell_lines(fresh) == cell_lines(result(230.0))


def test_no_cells_without_measurements() -> None:
    assert cell_lines({"gemm_peak_1_thread_gflops": 100.0, "ort_stage": {}, "servers": {}}) == []
