"""The collector's admission bound: requests and bytes in flight."""

from __future__ import annotations

from cem.collector.app import Admission


def test_requests_bound() -> None:
    admission = Admission(max_requests=2, max_bytes=1_000)
    assert admission.enter(10) and admission.enter(10)
    assert not admission.enter(10)
    admission.leave(10)
    assert admission.enter(10)
    assert (admission.requests, admission.bytes) == (2, 20)


def test_bytes_bound_and_a_lone_large_request_passes() -> None:
    admission = Admission(max_requests=10, max_bytes=1_000)
    assert admission.enter(1_500)  # alone it passes: the body limit, not this bound, judges its size
    assert not admission.enter(1)
    admission.leave(1_500)
    assert admission.enter(600)
    assert admission.enter(400)  # exactly at the bound
    assert not admission.enter(1)
    assert (admission.requests, admission.bytes) == (2, 1_000)
