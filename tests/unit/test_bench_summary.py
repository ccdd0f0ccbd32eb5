"""What `make bench` prints from its results: the one-line summary, the self-check row, and the latency phase's
percentiles, stages and windows."""

from typing import Any

from bench.latency import stages, timeline
from bench.summary import last_line, summary_table
from bench.worker_figures import percentile


def one_worker_result(check_ok: bool | None = True, incomplete: bool = False) -> dict[str, Any]:
    cpu = {"throughput-worker0": 9.5, "kafka": 2.0, "clickhouse": 1.25, "other_processes": 0.5, "wall": 7.0}
    return {
        "code_under_test": "tree", "machine": {"git": "abc1234", "load_average_at_start": (1.0, 1.0, 1.0), "cores": 2},
        "load_average_at_end": (2.0, 1.5, 1.0), "ratio_vs_bare_faust": 0.6,
        "bare_faust": {"mode": "events", "events_per_s": 10_000.0, "cpu_seconds": {"bare_faust": 3.0}},
        "throughput_1w": {"records": 20_000, "unique_valid": 18_500, "customers": 900, "events_per_s": 6_000.0,
                          "seconds": 3.3, "cpu_seconds": cpu, "incomplete": incomplete, "check": {"ok": check_ok}},
    }


def test_the_last_line_carries_every_figure_and_nan_for_a_phase_that_did_not_run() -> None:
    result = {**one_worker_result(), "latency": {"p99_s": 1.234}, "scale_2w": 1.712,
              "scale_2w_bound": {"at_spent_cpu": 1.9}, "serial_share": {"serial_share": 0.40651,
                                                                        "serial_ceiling_eps": 115_731.4}}

    assert last_line(result) == ("ratio_vs_bare_faust=0.60 p99_latency_s=1.23 p99_shuffled_s=nan scale_2w=1.71 "
                                 "scale_2w_cpu_bound=1.90 scale_2w_split=nan serial_share=0.4065 "
                                 "serial_ceiling_eps=115731")


def test_the_table_says_ok_only_when_every_checked_phase_holds_each_unique_event_once() -> None:
    ok = summary_table(one_worker_result(check_ok=True))
    failed = summary_table({**one_worker_result(check_ok=True), "latency": {
        "p50_s": 0.4, "p95_s": 0.8, "p99_s": 1.0, "achieved_rate": 3_000.0, "events_measured": 9_000,
        "poll_interval_s": 0.05, "check": {"ok": False}}})

    check_row = next(line for line in ok.splitlines() if line.startswith("self-check"))
    assert check_row.split()[-4:] == ["OK", "1", "phases", "checked"]
    assert "FAILED" in failed and "FAILED" not in ok
    assert "2 phases checked" in failed
    assert "latency p50 / p95 / p99" in failed and "0.4 / 0.8 / 1.0 s" in failed


def test_a_phase_cut_at_its_limit_is_flagged_and_not_counted_as_checked() -> None:
    table = summary_table(one_worker_result(check_ok=None, incomplete=True))

    assert "6,000/s INCOMPLETE" in table
    assert "0 phases checked, 1 INCOMPLETE (not checked)" in table
    assert "n/a" in table
    assert "worker0 9.5s, kafka 2.0s, clickhouse 1.2s, other 0.5s, wall 7.0s" in table


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([0.25], 99) == 0.25
    assert percentile([], 50) is None


def test_latency_stages_split_each_event_at_the_moment_the_resolver_took_its_batch() -> None:
    sent = {"a": 10.0, "b": 11.0, "c": 12.0}
    resolved = {"a": 10.5, "b": 11.25}
    visible = {"a": 11.0, "b": 12.0}

    assert stages(sent, resolved, visible) == {"send_to_resolver_p50_s": 0.25, "send_to_resolver_p99_s": 0.5,
                                               "resolver_to_visible_p50_s": 0.5, "resolver_to_visible_p99_s": 0.75}


def test_the_latency_timeline_groups_events_by_when_they_were_sent_not_when_they_became_visible() -> None:
    sent = {"a": 100.0, "b": 104.0, "c": 105.5, "d": 111.0, "e": 112.0}
    visible = {"a": 101.0, "b": 112.0, "c": 106.0, "d": 111.5}  # e never became visible

    assert timeline(sent, visible) == [
        {"from_s": 0, "events": 2, "p50_s": 1.0, "p99_s": 8.0},
        {"from_s": 5, "events": 1, "p50_s": 0.5, "p99_s": 0.5},
        {"from_s": 10, "events": 1, "p50_s": 0.5, "p99_s": 0.5},
    ]
