"""A hot identifier must not make the resolver slower: the same visitors on their own devices, then all on one
shared kiosk device, then all logging in with one e-mail address (a front-desk or placeholder address nobody
block-listed), through `Resolver.process` in-process (no Kafka, no ClickHouse).

    python -m bench.kiosk [--visitors N] [--seed S]

Each visitor browses anonymously, then on the device, then logs in with their e-mail (in the e-mail run, all with
the same address). Delivery is event time with realistic lateness (10% of
events arrive up to 300 positions late), in batches of 1,000, so late events do reach the hot identifier. Prints
the times and the ratios to the own-devices run; the target is at most 2.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from cem.domain.model import Identifier, Interaction
from cem.domain.resolver import Resolver, ResolverConfig
from cem.worker import tune_garbage_collector

BASE_MS = 1_790_000_000_000
BATCH = 1_000
LATENESS = 300  # events: a late event arrives up to this many positions after its event-time place
KIOSK = "kiosk-lobby-1"
FRONT_DESK = "frontdesk@store.example.net"


@dataclass(frozen=True)
class KioskResult:
    visitors: int
    events: int
    own_devices_s: float
    kiosk_s: float
    shared_email_s: float

    @property
    def ratio(self) -> float:
        return self.kiosk_s / self.own_devices_s

    @property
    def email_ratio(self) -> float:
        return self.shared_email_s / self.own_devices_s


def traffic(visitors: int, seed: int, kiosk: bool = False, shared_email: bool = False) -> list[Interaction]:
    rng = random.Random(seed)
    events: list[Interaction] = []
    for i in range(visitors):
        anon: Identifier = ("anonymous_id", f"anon-{i:06d}")
        device: Identifier = ("device_id", KIOSK if kiosk else f"dev-{i:06d}")
        t = BASE_MS + i * 20_000 + rng.randrange(0, 10_000)
        email: Identifier = ("email", FRONT_DESK if shared_email else f"visitor.{i}@mail.example.net")
        sets: list[tuple[Identifier, ...]] = [(anon,), (anon, device), (anon, device, email)]
        for n, identifiers in enumerate(sets):
            events.append(Interaction(f"ev-{i}-{n}", "web", "page_view", t + n * 5_000, tuple(sorted(identifiers)),
                                      f"fp-{i}-{n}"))
    events.sort(key=lambda e: (e.occurred_ms, e.event_id))
    for k in range(len(events)):
        if rng.random() < 0.1:
            j = min(len(events) - 1, k + rng.randrange(1, LATENESS))
            events[k], events[j] = events[j], events[k]
    return events


def resolve_all(events: list[Interaction]) -> tuple[float, int]:
    """Seconds to resolve every event, and the number of customers at the end."""
    resolver = Resolver(ResolverConfig())
    now_ms = BASE_MS + 30 * 86_400_000
    started = time.perf_counter()
    for k in range(0, len(events), BATCH):
        resolver.process(events[k:k + BATCH], now_ms)
    return time.perf_counter() - started, len(resolver.graph.customers)


def measure(visitors: int = 10_000, seed: int = 11) -> KioskResult:
    own = traffic(visitors, seed)
    resolve_all(own[: len(own) // 10])  # warm up caches and the allocator
    own_s, _ = resolve_all(own)
    kiosk_s, _ = resolve_all(traffic(visitors, seed, kiosk=True))
    email_s, _ = resolve_all(traffic(visitors, seed, shared_email=True))
    return KioskResult(visitors, len(own), own_s, kiosk_s, email_s)


def main(argv: list[str] | None = None) -> int:
    tune_garbage_collector()  # measure what a worker pays
    parser = argparse.ArgumentParser(prog="python -m bench.kiosk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    result = measure(args.visitors, args.seed)
    print(f"{result.visitors:,} visitors, {result.events:,} events on their own devices")
    print(f"own devices:      {result.own_devices_s:.2f} s")
    print(f"one kiosk device: {result.kiosk_s:.2f} s")
    print(f"one e-mail:       {result.shared_email_s:.2f} s")
    print(f"kiosk_ratio={result.ratio:.2f} email_ratio={result.email_ratio:.2f} (target <= 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
