"""A minimal Kafka protocol probe (ApiVersions v0, Metadata v4..v8, OffsetFetch v2), dependency-free and
synchronous: is a Kafka-compatible broker serving, and has its group coordinator loaded the committed offsets."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from devtools.services.base import Service, ServiceError, wait_port_until


@dataclass(frozen=True)
class KafkaMetadata:
    """What a Kafka-compatible broker reports about its cluster."""

    brokers: tuple[tuple[int, str, int], ...]  # (node_id, host, port)
    cluster_id: str | None
    controller_id: int
    topics: tuple[str, ...]
    unavailable: tuple[str, ...] = ()  # topics with an error or a partition without a leader (yet)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _kafka_roundtrip(sock: socket.socket, api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    client_id = b"cem-devservices"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (got,) = struct.unpack(">i", response[:4])
    if got != correlation_id:
        raise ConnectionError(f"correlation id mismatch: sent {correlation_id}, got {got}")
    return response[4:]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def int8(self) -> int:
        return int(self._unpack(">b"))

    def int16(self) -> int:
        return int(self._unpack(">h"))

    def int32(self) -> int:
        return int(self._unpack(">i"))

    def string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        value = self.data[self.pos : self.pos + length].decode()
        self.pos += length
        return value


def kafka_metadata(host: str, port: int, timeout: float = 5.0) -> KafkaMetadata:
    """Ask a Kafka-compatible broker for cluster metadata (all topics, no auto-creation).

    Raises :class:`OSError`/:class:`ConnectionError` if the broker is not reachable or not serving.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        # ApiVersions v0 is answered by every broker, whatever versions it supports.
        reader = _Reader(_kafka_roundtrip(sock, 18, 0, 1, b""))
        error = reader.int16()
        if error != 0:
            raise ConnectionError(f"ApiVersions failed with error code {error}")
        versions: dict[int, tuple[int, int]] = {}
        for _ in range(reader.int32()):
            key, low, high = reader.int16(), reader.int16(), reader.int16()
            versions[key] = (low, high)
        low, high = versions.get(3, (0, -1))
        version = max(low, 4)
        if version > min(high, 8):
            raise ConnectionError(f"broker supports Metadata v{low}..v{high}; the probe speaks v4..v8")
        # Metadata request v4..v8: topics = null (all), allow_auto_topic_creation = false,
        # and for v8 include_cluster/topic_authorized_operations = false.
        body = struct.pack(">ib", -1, 0)
        if version >= 8:
            body += struct.pack(">bb", 0, 0)
        reader = _Reader(_kafka_roundtrip(sock, 3, version, 2, body))
        reader.int32()  # throttle_time_ms
        brokers = []
        for _ in range(reader.int32()):
            node_id = reader.int32()
            broker_host = reader.string() or ""
            broker_port = reader.int32()
            reader.string()  # rack
            brokers.append((node_id, broker_host, broker_port))
        cluster_id = reader.string()
        controller_id = reader.int32()
        topics = []
        unavailable = []
        for _ in range(reader.int32()):
            topic_error = reader.int16()
            name = reader.string()
            reader.int8()  # is_internal
            serving = topic_error == 0
            for _ in range(reader.int32()):  # partitions
                partition_error = reader.int16()
                reader.int32()  # partition index
                leader = reader.int32()
                serving = serving and partition_error == 0 and leader >= 0
                if version >= 7:
                    reader.int32()  # leader epoch
                for _ in range(3 if version >= 5 else 2):  # replicas, isr, [offline replicas]
                    n = reader.int32()
                    reader.pos += 4 * max(n, 0)
            if version >= 8:
                reader.int32()  # topic authorized operations
            if name is not None:
                topics.append(name)
                if not serving:
                    unavailable.append(name)
        return KafkaMetadata(tuple(brokers), cluster_id, controller_id, tuple(topics), tuple(unavailable))


def _java_string_hash(text: str) -> int:
    """Java's String.hashCode of an ASCII string (Kafka maps a group to an offsets partition with it)."""
    h = 0
    for char in text:
        h = (31 * h + ord(char)) & 0xFFFFFFFF
    return h


def kafka_group_coordinators_ready(host: str, port: int, partitions: int, timeout: float = 5.0) -> bool:
    """True when the group coordinator answers for every partition of ``__consumer_offsets``: one OffsetFetch
    (v2, all topics) per partition, for a probe group that hashes to it, and no COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR. After a restart, committed offsets read as missing until then."""
    groups: dict[int, str] = {}
    i = 0
    while len(groups) < partitions:
        group = f"cem-devservices-probe-{i}"
        groups.setdefault((_java_string_hash(group) & 0x7FFFFFFF) % partitions, group)
        i += 1
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        for correlation_id, group in enumerate(groups.values(), start=10):
            encoded = group.encode()
            body = struct.pack(">h", len(encoded)) + encoded + struct.pack(">i", -1)  # topics: null (all)
            reader = _Reader(_kafka_roundtrip(sock, 9, 2, correlation_id, body))
            if reader.int32() != 0:  # a probe group has no offsets
                return False
            if reader.int16() != 0:
                return False
    return True


def wait_kafka_metadata(
    service: Service, host: str, port: int, deadline: float, *, all_partitions_led: bool = False
) -> KafkaMetadata:
    """Poll until the broker answers a Metadata request listing at least one broker, and with
    ``all_partitions_led`` until every partition it lists has a leader: after a restart the log is back, but
    its partitions (the group offsets among them) answer NOT_LEADER until the broker has taken them over."""
    wait_port_until(service, host, port, deadline)
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        service._check_alive()
        try:
            meta = kafka_metadata(host, port, timeout=min(1.0, max(0.5, deadline - time.monotonic())))
            if meta.brokers and not (all_partitions_led and meta.unavailable):
                return meta
            last_error = ServiceError(f"metadata lists no brokers or leaderless topics yet: {meta.unavailable[:5]}")
        except (OSError, struct.error, UnicodeDecodeError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise TimeoutError(f"no usable metadata from {host}:{port}: {last_error}")

