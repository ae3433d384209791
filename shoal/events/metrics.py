"""Prometheus metrics of shoal.events, in the process's default registry (so a
`shoal.Service`'s `/metrics` shows them): published, delivered, redelivered, acked,
dead-lettered per topic and group, and the lag each consumer sees for what it owns."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "ACKED",
    "DEAD_LETTERS",
    "DELIVERED",
    "LAG",
    "PUBLISHED",
    "REDELIVERIES",
]

PUBLISHED = Counter(
    "shoal_events_published_total", "Messages acknowledged by the backend.", ["topic"]
)
DELIVERED = Counter(
    "shoal_events_delivered_total", "Deliveries handed to handlers.", ["topic", "group"]
)
REDELIVERIES = Counter(
    "shoal_events_redeliveries_total",
    "Deliveries after the first of a message (failures, nacks, a dead consumer's).",
    ["topic", "group"],
)
ACKED = Counter("shoal_events_acked_total", "Messages a handler finished.", ["topic", "group"])
DEAD_LETTERS = Counter(
    "shoal_events_dead_letters_total",
    "Messages moved to the dead-letter topic.",
    ["topic", "group"],
)
LAG = Gauge(
    "shoal_events_lag",
    "Messages not yet done in the partitions this consumer owns.",
    ["topic", "group"],
)
