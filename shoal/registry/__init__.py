"""The service registry's model and logic, shared by the control plane and its clients.

What an instance is (`Instance`, validated on construction), where it lives in the store
(`keys`), how its health is judged (`CheckSpec`, the rise/fall function `observe`), and
what discovery returns (`InstanceFilter`, `discover` with the protect threshold), and
which control-plane member runs an instance's active check (`check_owner`).

Mostly pure: no I/O, no clock, no global randomness -- times are arguments. Imports
nothing from shoal outside this package. The node runs the checks and writes the store.
"""

from .checks import (
    CheckSpec,
    CheckState,
    format_duration,
    observe,
    parse_check,
    parse_duration,
)
from .discovery import (
    Discovery,
    InstanceFilter,
    ServiceSettings,
    ServiceSummary,
    discover,
    parse_filter,
    summarize,
)
from .errors import RegistryError
from .instance import Instance, registration
from .keys import (
    SERVICES_PREFIX,
    check_name,
    instance_key,
    instances_prefix,
    parse_instance_key,
    service_prefix,
    settings_key,
)
from .ownership import check_owner, encode_roster, parse_roster
from .status import Health, HealthStatus, parse_status

__all__ = [
    "SERVICES_PREFIX",
    "CheckSpec",
    "CheckState",
    "Discovery",
    "Health",
    "HealthStatus",
    "Instance",
    "InstanceFilter",
    "RegistryError",
    "ServiceSettings",
    "ServiceSummary",
    "check_name",
    "check_owner",
    "discover",
    "encode_roster",
    "format_duration",
    "instance_key",
    "instances_prefix",
    "observe",
    "parse_check",
    "parse_duration",
    "parse_filter",
    "parse_instance_key",
    "parse_roster",
    "parse_status",
    "registration",
    "service_prefix",
    "settings_key",
    "summarize",
]
