"""Fixtures of the component tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cem.service.resolver_service import ResolverService
from cem.settings import Settings


@pytest.fixture
def new_service() -> Iterator[Callable[..., ResolverService]]:
    """`new_service(settings, **kwargs)`: a ResolverService whose connection is closed after the test. The embedded
    engine serves one data directory per process until every connection to it is closed, so a connection left
    open would make the next test's directory fail to open."""
    made: list[ResolverService] = []

    def make(settings: Settings, **kwargs: Any) -> ResolverService:
        service = ResolverService(settings, **kwargs)
        made.append(service)
        return service

    yield make
    for service in made:
        service.shutdown()
