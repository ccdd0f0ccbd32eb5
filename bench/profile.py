"""Where a worker's time goes.

    python -m bench.profile inproc [--events N] [--kind sim|many] [--order time|shuffled] [--cprofile]
                                   [--with-proposals NAMES]
        The worker's per-event code run in this process on benchmark traffic, without Kafka or ClickHouse:
        decode, build_interaction (validate, normalise, enrich), the cem.resolve wire format, Resolver.process
        and effect_columns. Prints CPU microseconds per record for each stage (time.process_time, so other
        processes on the machine disturb it less than wall time), and with --cprofile the top functions.

    python -m bench.profile ingest [--events N] [--kind sim|many] [--repeat K] [--cprofile]
        Only the ingest agent's per-record code (decode, build_interaction, and both as Ingestor.parse), each
        repeated K times from cold caches; the best run is reported (the least disturbed by other load): the figure for
        before/after comparisons of schemas/codec.py and cem/domain/{validate,identifiers,enrich}.py.

    python -m bench.profile spy FILE [FILE ...]
        Summarises py-spy collapsed stacks (bench.run --profile writes bench/results/profile-<phase>.txt): the
        share of the worker's CPU samples per pipeline stage, attributing each sample to the innermost frame
        that belongs to a known stage.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cem.worker import tune_garbage_collector

# (stage, substring of a py-spy frame "function (path:line)"); the innermost matching frame decides.
STAGES: tuple[tuple[str, str], ...] = (
    ("ingest: decode (fastavro/orjson)", "schemas/codec.py"),
    ("ingest: sentiment (VADER)", "vaderSentiment"),
    ("ingest: text signals", "cem/domain/text/"),
    ("ingest: user agent (ua-parser)", "ua_parser"),
    ("ingest: phone numbers", "phonenumbers"),
    ("ingest: identifiers", "cem/domain/identifiers.py"),
    ("ingest: enrich (other)", "cem/domain/enrich.py"),
    ("ingest: validate", "cem/domain/validate.py"),
    ("resolver: identity graph", "cem/domain/identity.py"),
    ("resolver: sessions, journeys", "cem/domain/journeys.py"),
    ("resolver: dedup and the rest", "cem/domain/resolver.py"),
    ("wire: Interaction to/from cem.resolve", "cem/domain/model.py"),
    ("sink: ClickHouse driver (serialise, send)", "clickhouse_driver"),
    ("sink: rows to columns", "sinks/writer.py"),
    ("metrics (prometheus_client)", "prometheus_client"),
    ("agents' own code (streams/app.py)", "streams/app.py"),
    ("resolver service (cem/service)", "cem/service/"),
    ("Kafka client (aiokafka)", "aiokafka"),
    ("Faust/mode stream machinery", "(faust/"),
    ("Faust/mode stream machinery", "(mode/"),
)
# Frames that only carry a call (the event loop running a callback, a thread running a task): a sample is
# attributed past them, to the innermost frame that does belong to a stage.
TRANSPARENT = ("asyncio/", "selectors.py", "threading.py", "concurrent/futures/", "<frozen runpy>", "_weakrefset.py")


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        if any(marker in frame for marker in TRANSPARENT):
            continue
        for stage, marker in STAGES:
            if marker in frame:
                return stage
    if any("selectors.py" in frame for frame in stack):
        return "event loop: epoll (py-spy counted it busy)"
    if any("asyncio/" in frame for frame in stack):
        return "event loop: callbacks, socket I/O"
    return "other (interpreter, threads, imports)"


def summarise_spy(path: Path) -> list[tuple[str, int, float]]:
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text or not n.isdigit():
            continue
        counts[stage_of(stack_text.split(";"))] += int(n)
    total = sum(counts.values()) or 1
    return [(stage, n, 100.0 * n / total) for stage, n in counts.most_common()]


def print_spy(paths: list[Path]) -> None:
    for path in paths:
        rows = summarise_spy(path)
        total = sum(n for _, n, _ in rows)
        print(f"{path}: {total} samples (100 Hz, busy threads only)")
        for stage, n, share in rows:
            print(f"  {share:5.1f}%  {n:7d}  {stage}")


# ---- in-process per-stage timing ---------------------------------------------------------------------------
def inproc(events: int, kind: str, seed: int, batch: int, profile: bool, order: str = "time") -> dict[str, float]:
    import orjson

    from bench.traffic import many_customers, simulated
    from cem.config import resolver_config
    from cem.domain.model import Interaction
    from cem.domain.resolver import Resolver
    from cem.domain.validate import build_interaction
    from cem.settings import Settings
    from devtools.simulate import recent_base_ms
    from schemas.codec import DecodeError, decode
    from sinks.writer import effect_columns
    from streams.app import Ingestor

    base = recent_base_ms()
    traffic = simulated(events, seed, 0, base, order) if kind == "sim" else \
        many_customers(max(1, events // 5), 5, seed, 0, base, order=order)
    settings = Settings()
    ingestor = Ingestor(settings)
    config = resolver_config(settings)
    now_ms = int(time.time() * 1000)
    records = [(value, channel) for channel, _key, value in traffic.records]
    n = len(records)
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        started = time.process_time()
        result = fn()
        timings[name] = (time.process_time() - started) / n * 1e6
        return result

    def decode_all() -> list[Any]:
        out: list[Any] = []
        for value, _channel in records:
            try:
                out.append(decode(value, settings.max_record_bytes))
            except DecodeError:
                out.append(None)
        return out

    def run() -> None:
        decoded = timed("decode", decode_all)
        built = timed("validate+normalise+enrich", lambda: [
            build_interaction(d, ch, ingestor.rules, ingestor.limits, now_ms) if d is not None else None
            for d, (_v, ch) in zip(decoded, records, strict=True)])
        valid = [b for b in built if isinstance(b, Interaction)]
        payloads = timed("wire: to_wire + orjson.dumps", lambda: [
            orjson.dumps([v.to_wire() for v in valid[i:i + batch]]) for i in range(0, len(valid), batch)])
        back = timed("wire: orjson.loads + from_wire",
                     lambda: [Interaction.from_wire(r) for p in payloads for r in orjson.loads(p)])
        resolver = Resolver(config)
        sink_batch = max(batch, settings.sink_batch_max // max(1, settings.ingest_batch_max) * batch)
        effects = timed("resolver.process", lambda: [resolver.process(back[i:i + sink_batch], now_ms + i)
                                                     for i in range(0, len(back), sink_batch)])
        timed("effect_columns", lambda: [effect_columns(e, now_ms, config.fcr_window_ms) for e in effects])

    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    else:
        run()
    # The end-to-end entry point, for reference: decode + build in one call, as the ingest agent runs it.
    timed("Ingestor.parse (decode+build, end to end)", lambda: [ingestor.parse(v, ch, now_ms) for v, ch in records])
    print(f"{n} records ({kind}), CPU microseconds per record:")
    for name, us in timings.items():
        print(f"  {us:8.2f}  {name}")
    return timings


def clear_text_caches() -> None:
    from cem.domain import enrich
    from cem.domain.text import signals

    for name in dir(enrich):
        if "sentiment" in name:
            clear = getattr(getattr(enrich, name), "cache_clear", None)
            if callable(clear):
                clear()
    for name in ("_cached_analyse", "_cached_sentence"):
        getattr(signals, name).cache_clear()


def reset_caches(ingestor: Any) -> None:
    """Empty every memo on the ingest path (whichever this version of the code has), then warm the parsers'
    one-time loading with inputs that are not in the traffic."""
    import ua_parser

    from cem.domain import enrich, identifiers
    from cem.domain.text import signals

    for module in (enrich, identifiers, signals):
        for name in dir(module):
            clear = getattr(getattr(module, name), "cache_clear", None)
            if callable(clear):
                clear()
    memo = getattr(ingestor.rules, "_cache", None)
    if isinstance(memo, dict):
        memo.clear()
    vars(ua_parser).pop("parser", None)  # the default parser and its own cache are rebuilt on next use
    enrich.device_of("Mozilla/5.0 (X11; Linux x86_64; warm-up) Gecko/20100101 Firefox/1.0")
    enrich.sentiment("warm-up sentence, not in the traffic")


def ingest(events: int, kind: str, seed: int, repeat: int, profile: bool, warm: bool = False) -> dict[str, float]:
    """The ingest agent's per-record code only (decode, then build_interaction), each stage repeated `repeat`
    times over the same records; the minimum is reported, which is the figure least disturbed by other load."""
    from bench.traffic import many_customers, simulated
    from cem.domain.validate import build_interaction
    from cem.settings import Settings
    from devtools.simulate import recent_base_ms
    from schemas.codec import DecodeError, decode
    from streams.app import Ingestor

    base = recent_base_ms()
    traffic = simulated(events, seed, 0, base) if kind == "sim" else \
        many_customers(max(1, events // 5), 5, seed, 0, base)
    settings = Settings()
    ingestor = Ingestor(settings)
    now_ms = int(time.time() * 1000)
    records = [(value, channel) for channel, _key, value in traffic.records]
    n = len(records)
    max_bytes = settings.max_record_bytes

    def decode_all() -> list[Any]:
        out: list[Any] = []
        for value, _channel in records:
            try:
                out.append(decode(value, max_bytes))
            except DecodeError:
                out.append(None)
        return out

    decoded = decode_all()
    rules, limits = ingestor.rules, ingestor.limits

    def decode_only() -> None:  # results dropped at once, as the agent does: no garbage-collector drift
        for value, _channel in records:
            try:
                decode(value, max_bytes)
            except DecodeError:
                pass

    def build_all() -> None:
        for d, (_v, ch) in zip(decoded, records, strict=True):
            if d is not None:
                build_interaction(d, ch, rules, limits, now_ms)

    def parse_all() -> None:
        for v, ch in records:
            ingestor.parse(v, ch, now_ms)

    stages: dict[str, Callable[[], Any]] = {"decode": decode_only, "build_interaction": build_all,
                                            "Ingestor.parse": parse_all}
    best = {name: float("inf") for name in stages}
    for _ in range(repeat):
        for name, fn in stages.items():
            if not warm:
                reset_caches(ingestor)  # every pass sees the traffic as a fresh worker would: cold caches
            else:
                clear_text_caches()  # steady state: user agents and identifiers recur, free texts do not
            started = time.process_time()
            fn()
            best[name] = min(best[name], (time.process_time() - started) / n * 1e6)
    if profile:
        reset_caches(ingestor)
        profiler = cProfile.Profile()
        profiler.enable()
        parse_all()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    print(f"{n} records ({kind}), CPU microseconds per record, best of {repeat}, "
          f"{'warm' if warm else 'cold'} caches:")
    for name, us in best.items():
        print(f"  {us:8.2f}  {name}")
    return best


def main(argv: list[str] | None = None) -> int:
    tune_garbage_collector()  # measure what a worker pays
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inproc")
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--kind", choices=["sim", "many"], default="sim")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--batch", type=int, default=2_000, help="ingest batch (events per cem.resolve message)")
    p.add_argument("--cprofile", action="store_true")
    p.add_argument("--order", choices=["time", "shuffled"], default="time")
    p.add_argument("--with-proposals", default="")
    g = sub.add_parser("ingest")
    g.add_argument("--events", type=int, default=50_000)
    g.add_argument("--kind", choices=["sim", "many"], default="sim")
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--repeat", type=int, default=5)
    g.add_argument("--cprofile", action="store_true")
    g.add_argument("--warm", action="store_true", help="keep caches between passes (steady state: every user agent "
                   "and identifier already seen once; free texts still new, as in real traffic)")
    s = sub.add_parser("spy")
    s.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "spy":
        print_spy(args.files)
        return 0
    if args.command == "ingest":
        ingest(args.events, args.kind, args.seed, args.repeat, args.cprofile, args.warm)
        return 0
    if args.with_proposals:
        from bench.proposals import apply

        apply(args.with_proposals.split(","))
        print(f"WHAT-IF: proposals applied: {args.with_proposals}")
    inproc(args.events, args.kind, args.seed, args.batch, args.cprofile, args.order)
    return 0


if __name__ == "__main__":
    sys.exit(main())
