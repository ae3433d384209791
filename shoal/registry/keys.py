"""Where the registry lives in the store's key space (text keys; the node encodes them).

    /registry/services/{service}/instances/{id}   one instance, JSON (see `Instance`)
    /registry/services/{service}/settings         per-service settings, JSON

Service names and instance ids are restricted to ``[A-Za-z0-9._-]`` (no ``/``), so one
service's prefix never covers another's and a key parses back unambiguously.
"""

from __future__ import annotations

import re

from .errors import RegistryError

SERVICES_PREFIX = "/registry/services/"
MAX_NAME = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(value: object, field: str) -> str:
    """`value` if it is a valid service name or instance id, else `RegistryError`."""
    if not isinstance(value, str) or not value:
        raise RegistryError(field, "must be a non-empty string")
    if len(value) > MAX_NAME:
        raise RegistryError(field, f"must be at most {MAX_NAME} characters")
    if not _NAME.match(value):
        raise RegistryError(
            field, f"{value!r} may hold only letters, digits, '.', '_', '-' (not first)"
        )
    return value


def service_prefix(service: str) -> str:
    return f"{SERVICES_PREFIX}{check_name(service, 'service')}/"


def instances_prefix(service: str) -> str:
    return f"{service_prefix(service)}instances/"


def instance_key(service: str, instance_id: str) -> str:
    return f"{instances_prefix(service)}{check_name(instance_id, 'id')}"


def settings_key(service: str) -> str:
    return f"{service_prefix(service)}settings"


def parse_instance_key(key: str) -> tuple[str, str] | None:
    """``(service, id)`` for an instance key, None for any other key."""
    if not key.startswith(SERVICES_PREFIX):
        return None
    parts = key[len(SERVICES_PREFIX) :].split("/")
    if len(parts) != 3 or parts[1] != "instances" or not parts[0] or not parts[2]:
        return None
    return parts[0], parts[2]
