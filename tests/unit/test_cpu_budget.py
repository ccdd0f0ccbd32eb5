"""The scaling bound the bench prints: the CPU seconds a run measured, turned into the best scale_2w possible."""

import pytest

from bench.cpu_budget import pipeline_cpu, scale_bound

EVENTS = 60_000
ONE = {"throughput-worker0": 12.0, "kafka": 1.0, "clickhouse": 2.0, "bench": 5.0, "machine_busy": 30.0,
       "other_processes": 10.0, "wall": 15.0, "cores": 2.0}
TWO = {"scaling-worker0": 8.0, "scaling-worker1": 7.0, "kafka": 1.5, "clickhouse": 1.5, "bench": 5.0,
       "machine_busy": 40.0, "other_processes": 20.0, "wall": 12.0, "cores": 2.0}


def test_only_the_pipelines_processes_count() -> None:
    assert pipeline_cpu(ONE) == pytest.approx(15.0)
    assert pipeline_cpu(TWO) == pytest.approx(18.0)


def test_the_bound_is_all_cores_busy_at_the_cpu_each_phase_spent_per_event() -> None:
    one_rate, two_rate = EVENTS / 15.0, EVENTS / 12.0  # 4,000/s and 5,000/s
    bound = scale_bound(one_rate, ONE, two_rate, TWO, EVENTS, cores=2.0)
    # 18 s for 60k events = 300 us each: two cores give 6,667/s, 1.667 x 4,000/s.
    assert bound.at_spent_cpu == pytest.approx(2 / 300e-6 / 4000)
    # 15 s = 250 us each: 8,000/s, 2.0 x.
    assert bound.free_split == pytest.approx(2.0)
    assert bound.busy_cores == pytest.approx(1.5)  # 300 us x 5,000/s
    assert bound.extra_cpu == pytest.approx(0.2)
    assert bound.as_dict() == {"at_spent_cpu": 1.667, "free_split": 2.0, "busy_cores": 1.5, "extra_cpu": 0.2}
