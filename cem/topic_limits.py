"""Start-up check that the size limits agree: the records cem accepts, the messages it writes, the producer's
request limit and the topics' `max.message.bytes`. A worker whose limits disagree could accept a record it
cannot forward or dead-letter, so it refuses to start and says which numbers to change."""

from __future__ import annotations

import logging
from typing import Any

from cem.settings import Settings

log = logging.getLogger("cem.worker")

# Kafka's record-batch framing, the key and the headers on top of a message's value.
FRAMING_BYTES = 16_384


class LimitsDisagree(Exception):
    pass


def limit_problems(settings: Settings, topic_max_bytes: dict[str, int]) -> list[str]:
    """Every disagreement between the settings and the topics' `max.message.bytes` (by topic name)."""
    problems = []
    needed = settings.message_max_bytes + FRAMING_BYTES
    if settings.max_record_bytes > settings.message_max_bytes:
        problems.append(f"CEM_MAX_RECORD_BYTES={settings.max_record_bytes} exceeds CEM_MESSAGE_MAX_BYTES="
                        f"{settings.message_max_bytes}: an accepted record could not travel to the resolver")
    if needed > settings.producer_max_request_bytes:
        problems.append(f"CEM_MESSAGE_MAX_BYTES={settings.message_max_bytes} plus {FRAMING_BYTES} bytes of framing "
                        f"exceeds CEM_PRODUCER_MAX_REQUEST_BYTES={settings.producer_max_request_bytes}")
    for topic in internal_topics(settings):
        limit = topic_max_bytes.get(topic)
        if limit is not None and limit < needed:
            problems.append(f"topic {topic} has max.message.bytes={limit}, below CEM_MESSAGE_MAX_BYTES + framing "
                            f"({needed}): raise the topic's limit or lower CEM_MESSAGE_MAX_BYTES")
    return problems


def internal_topics(settings: Settings) -> list[str]:
    """The topics whose messages the worker writes up to CEM_MESSAGE_MAX_BYTES."""
    split = [settings.identity_topic, settings.customers_topic] if settings.split_partitions else []
    return [settings.resolve_topic, *split, settings.deadletter_topic, settings.control_topic]


async def topic_message_limits(admin: Any, topics: list[str]) -> dict[str, int]:
    """`max.message.bytes` of each topic as the broker enforces it (its own or the broker default)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    resources = [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None}) for topic in topics]
    limits: dict[str, int] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            error_code, name, entries = resource[0], resource[3], resource[4]
            if error_code:
                continue
            for entry in entries:
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    limits[name] = int(entry[1])
    return limits


async def check_message_limits(admin: Any, settings: Settings) -> None:
    """Raise LimitsDisagree when the limits disagree. A broker that cannot describe topic configurations (the
    embedded demo broker) is checked against the settings alone."""
    topics = internal_topics(settings)
    try:
        limits = await topic_message_limits(admin, topics)
    except Exception as exc:
        log.warning("could not read the topics' max.message.bytes (%s); checking the settings only",
                    type(exc).__name__)
        limits = {}
    problems = limit_problems(settings, limits)
    if problems:
        raise LimitsDisagree("size limits disagree:\n  " + "\n  ".join(problems))
