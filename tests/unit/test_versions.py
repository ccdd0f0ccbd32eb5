"""Batch versions (cem.domain.effects): above what they supersede, at least the clock, and for the customer
partitions' writers, never one another writer could write."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cem.domain.effects import OWN_VERSIONS, next_version, own_version


def test_a_version_is_above_the_last_one_and_what_it_supersedes_and_at_least_the_clock() -> None:
    assert next_version(5, 0) == 6
    assert next_version(5, 0, after=9) == 10
    assert next_version(5, 2) == 2000


@given(version=st.integers(0, 2**62), writer=st.integers(0, OWN_VERSIONS - 1),
       other=st.integers(0, OWN_VERSIONS - 1))
def test_an_own_version_is_the_first_from_there_in_the_writers_digits(version: int, writer: int,
                                                                     other: int) -> None:
    mine = own_version(version, writer)
    assert version <= mine < version + OWN_VERSIONS
    assert mine % OWN_VERSIONS == writer
    assert (own_version(version, other) == mine) == (other == writer)
