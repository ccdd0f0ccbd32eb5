"""`make bench`'s options: --quick caps each phase, --set takes only settings fields, the memory phase's customers
default to its events / 5."""

import pytest

from bench.run import parse_args


def test_quick_caps_the_phases_and_keeps_what_is_already_smaller() -> None:
    args = parse_args(["--quick", "--events", "5000", "--latency-seconds", "60"])

    assert (args.events, args.latency_seconds, args.memory_events, args.collector_requests) == (5_000, 10.0, 20_000,
                                                                                                 200)
    assert args.memory_customers == 4_000


def test_a_setting_for_the_workers_must_name_a_settings_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["--set", "sink_flush_seconds=0.3"]).overrides == ["sink_flush_seconds=0.3"]
    with pytest.raises(SystemExit) as refused:
        parse_args(["--set", "sink_flush=0.3"])

    assert refused.value.code == 2
    assert "--set 'sink_flush=0.3': expected FIELD=VALUE with a Settings field" in capsys.readouterr().err


def test_an_unknown_proposal_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--with-proposals", "no_such_proposal"])

    assert "unknown proposals ['no_such_proposal']" in capsys.readouterr().err
