"""Development tooling: private Kafka and ClickHouse services, the traffic simulator, the worker launcher and
metric scraping shared by tests, benchmarks and the demo, and the demo itself.

Not part of the installed package (pyproject.toml lists only cem, streams, schemas and sinks): it runs from a
checkout, with the repository root on sys.path (`python -m devtools.demo`, pytest, `python -m bench.run`). The
product never imports it (tests/unit/test_layout.py checks).
"""
