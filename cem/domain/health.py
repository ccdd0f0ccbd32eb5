"""`cem doctor`'s verdicts: facts gathered from Kafka, the warehouse and a worker in, one line per check out.
Pure: the gathering is cem.doctor's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OK, FAIL, INFO = "OK", "FAIL", "--"  # INFO: said, never a failure (an optional check that could not be made)


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str


def render(checks: Sequence[Check]) -> list[str]:
    width = max((len(c.name) for c in checks), default=0)
    return [f"{c.status:<4}  {c.name:<{width}}  {c.detail}" for c in checks]


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0


def judge_topics(wanted: Mapping[str, int], found: Mapping[str, int], single: Sequence[str]) -> list[Check]:
    """`wanted`: every topic of the pipeline; `found`: the partitions of those that exist; `single`: topics that
    must have exactly one partition (the resolver's and the control topic: one authority over all events)."""
    checks = []
    for topic in wanted:
        if topic not in found:
            checks.append(Check(FAIL, f"topic {topic}", "missing: `cem worker` creates the pipeline's topics at "
                                "start; or create it with the partitions you want"))
        elif topic in single and found[topic] != 1:
            checks.append(Check(FAIL, f"topic {topic}", f"{found[topic]} partitions, must be 1 (one resolver sees "
                                "every event): recreate it with one partition"))
    if not checks:
        counts = sorted({found[t] for t in wanted if t not in single})
        shown = "/".join(str(n) for n in counts) or "1"
        checks.append(Check(OK, "topics", f"all {len(wanted)} present ({shown} partitions each, "
                            f"{', '.join(single)}: 1)"))
    return checks


def judge_migrations(files: Sequence[str], applied: set[str] | None) -> Check:
    """`files`: the migrations shipped; `applied`: those recorded in schema_migrations (None: no such table)."""
    if applied is None:
        return Check(FAIL, "migrations", "none applied (no schema_migrations table): run `cem migrate`, or start "
                     "`cem worker`, which applies them")
    missing = [name for name in files if name not in applied]
    if missing:
        return Check(FAIL, "migrations", f"not applied: {', '.join(missing)}: run `cem migrate`")
    return Check(OK, "migrations", f"all {len(files)} applied (last: {files[-1] if files else 'none'})")


def judge_lag(lags: Mapping[str, int], max_lag: int) -> list[Check]:
    """Per topic, messages the consumer group has not committed yet."""
    waiting = {topic: lag for topic, lag in lags.items() if lag > 0}
    if not waiting:
        return [Check(OK, "lag", f"nothing waiting on {len(lags)} topics")]
    checks = []
    for topic, lag in sorted(waiting.items()):
        if lag > max_lag:
            checks.append(Check(FAIL, f"lag {topic}", f"{lag} messages waiting (> CEM_DOCTOR_MAX_LAG={max_lag}): "
                                "are the workers running and keeping up? Start more, or see their logs"))
        else:
            checks.append(Check(OK, f"lag {topic}", f"{lag} messages waiting"))
    return checks


def judge_members(members: int | None, group: str) -> Check:
    if members is None:
        return Check(INFO, "workers", f"the broker cannot describe consumer group {group}")
    if members == 0:
        return Check(FAIL, "workers", f"no worker in consumer group {group}: start `cem worker` (with "
                     f"CEM_APP_ID={group})")
    return Check(OK, "workers", f"{members} in consumer group {group}")


def judge_deadletters(last_hour: int, total: int, max_per_hour: int, topic: str) -> Check:
    detail = f"{last_hour} in the last hour ({total} retained in {topic})"
    if last_hour > max_per_hour:
        return Check(FAIL, "dead letters", f"{detail} > CEM_DOCTOR_MAX_DEADLETTERS_PER_HOUR={max_per_hour}: read "
                     "their reasons (README, \"Dead letters\") and fix the producer")
    return Check(OK, "dead letters", detail)
