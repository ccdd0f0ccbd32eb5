"""The bench's fill and drain of a multi-worker phase, from the samples it took."""

from bench.pipeline_timeline import Sample, fill_and_drain


def test_fill_is_the_first_row_and_drain_runs_from_the_last_record_consumed_to_the_end_of_the_phase() -> None:
    samples = [Sample(0.0, 0, 40), Sample(0.2, 0, 2_000), Sample(0.4, 1_100, 4_100), Sample(0.6, 3_000, 6_000),
               Sample(0.8, 5_000, 8_000), Sample(1.0, 7_000, 8_000)]

    stages = fill_and_drain(samples, records=8_000, phase_s=1.3)

    assert stages is not None
    assert (stages.fill_s, round(stages.drain_s, 3)) == (0.4, 0.5)
    assert round(stages.overlap_share, 3) == round(0.4 / 1.3, 3)
    assert stages.as_dict() == {"fill_s": 0.4, "drain_s": 0.5, "phase_s": 1.3, "overlap_share": 0.308}


def test_a_phase_the_samples_never_saw_complete_gives_no_figure() -> None:
    never_consumed_all = [Sample(0.0, 0, 10), Sample(0.2, 500, 900)]
    never_a_row = [Sample(0.0, 0, 10), Sample(0.2, 0, 1_000)]

    assert fill_and_drain(never_consumed_all, records=1_000, phase_s=0.5) is None
    assert fill_and_drain(never_a_row, records=1_000, phase_s=0.5) is None


def test_stages_that_never_overlap_count_no_share_rather_than_a_negative_one() -> None:
    samples = [Sample(0.0, 0, 1_000), Sample(0.6, 10, 1_000)]

    stages = fill_and_drain(samples, records=1_000, phase_s=0.8)

    assert stages is not None
    assert (stages.fill_s, stages.drain_s, stages.overlap_share) == (0.6, 0.8, 0.0)
