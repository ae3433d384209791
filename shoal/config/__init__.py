"""The config center: formats and validation, versions and history, diff, rollback and
gray release (beta), and how each maps onto keys of the store.

Everything here is logic shared by the server and clients. Writes are planned as `Plan`s
that the node carries out as one guarded store transaction (`model.py` explains the key
layout and why no two publishes can share a version number); content is validated by
`formats.py`; beta selectors are matched by `selector.py`. No I/O, no clock (time is a
``now`` argument), nothing imported from the rest of shoal.
"""

from .errors import (
    ConfigError,
    Conflict,
    ContentTooLarge,
    InvalidContent,
    InvalidName,
    InvalidSelector,
    NotFound,
    VersionMismatch,
)
from .formats import (
    FORMATS,
    MAX_CONTENT_BYTES,
    Format,
    parse_content,
    parse_properties,
    validate,
)
from .model import (
    CONFIG_PREFIX,
    Beta,
    Effective,
    ItemId,
    Meta,
    Plan,
    Stored,
    Version,
    effective,
    item_of_meta_key,
    namespace_prefix,
    plan_beta,
    plan_delete,
    plan_drop,
    plan_promote,
    plan_publish,
    plan_rollback,
    sha256,
    unified_diff,
)
from .selector import check_labels, check_selector, matches, parse_pairs

__all__ = [
    "CONFIG_PREFIX",
    "FORMATS",
    "MAX_CONTENT_BYTES",
    "Beta",
    "ConfigError",
    "Conflict",
    "ContentTooLarge",
    "Effective",
    "Format",
    "InvalidContent",
    "InvalidName",
    "InvalidSelector",
    "ItemId",
    "Meta",
    "NotFound",
    "Plan",
    "Stored",
    "Version",
    "VersionMismatch",
    "check_labels",
    "check_selector",
    "effective",
    "item_of_meta_key",
    "matches",
    "namespace_prefix",
    "parse_content",
    "parse_pairs",
    "parse_properties",
    "plan_beta",
    "plan_delete",
    "plan_drop",
    "plan_promote",
    "plan_publish",
    "plan_rollback",
    "sha256",
    "unified_diff",
    "validate",
]
