"""`shoal.events`: durable publish/subscribe with consumer groups.

    from shoal.events import Events, Nack

    bus = Events()                                    # or Events("redis://127.0.0.1:6379")
    bus.publish("orders.created", '{"id": 7}', key="customer-42", id="order-7")

    def bill(message):                                # returning acknowledges
        if not ready():
            raise Nack(delay=5.0)                     # again in 5 s (counts as an attempt)
        charge(message.json())

    sub = bus.subscribe("orders.created", bill, group="billing")

Delivery is at least once: each message goes to one member of each group, and every
group gets every message; a consumer that dies hands its messages to another member
within a second or two; a message that fails `max_attempts` times goes to the topic's
dead-letter topic; messages of one key are never handed to two consumers at once, and
in publication order. See docs/events.md. `AsyncEvents` is the same API, awaited.
"""

from __future__ import annotations

from .api import AsyncEvents, AsyncSubscription, Backend, Events, Subscription, backend_for
from .errors import (
    BackendUnavailable,
    EventsError,
    InvalidEvent,
    InvalidName,
    PayloadTooLarge,
    UnknownGroup,
)
from .handlers import Handler, Nack
from .model import MAX_PAYLOAD_BYTES, Message, TopicConfig
from .types import GroupInfo, GroupLag, PartitionLag, Published, SubscribeOptions

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "AsyncEvents",
    "AsyncSubscription",
    "Backend",
    "BackendUnavailable",
    "Events",
    "EventsError",
    "GroupInfo",
    "GroupLag",
    "Handler",
    "InvalidEvent",
    "InvalidName",
    "Message",
    "Nack",
    "PartitionLag",
    "PayloadTooLarge",
    "Published",
    "SubscribeOptions",
    "Subscription",
    "TopicConfig",
    "UnknownGroup",
    "backend_for",
]
