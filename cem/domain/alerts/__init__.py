"""Real-time alerts on the resolved stream: rules (a TOML file), an event-time watermark, and the engine that
raises and withdraws alerts deterministically (docs/alerts.md)."""

from cem.domain.alerts.engine import AlertEngine
from cem.domain.alerts.model import (
    OPEN,
    WITHDRAWN,
    AlertChanges,
    AlertRow,
    AlertSnapshot,
    BatchFacts,
    TimerRow,
    alert_id_for,
    batch_facts,
)
from cem.domain.alerts.rules import RuleFileError, RuleSet, parse_rules

__all__ = ["OPEN", "WITHDRAWN", "AlertChanges", "AlertEngine", "AlertRow", "AlertSnapshot", "BatchFacts",
           "RuleFileError", "RuleSet", "TimerRow", "alert_id_for", "batch_facts", "parse_rules"]
