"""Request bodies of the native HTTP API (`/api/v1`).

Every model forbids unknown fields, so a typo is a clear 400 rather than a silently
ignored option, and validates strictly: a JSON `true` is not the integer 1, `"5"` is not
a TTL and `0` is not `false` -- a wrong type is a 400 naming the field, never a guess.
(An integer is still a number where a float is asked.)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .peer_addr import split_peer_addr

MAX_ID = 2**63 - 1  # leases, revisions and compared numbers travel as 64-bit integers
STRICT = ConfigDict(extra="forbid", strict=True)

# What the schema advertises; `split_peer_addr` has the last word (ranges, label rules).
PEER_ADDR = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$"


def _peer_addr(text: str) -> str:
    split_peer_addr(text)
    return text


PeerAddr = Annotated[str, Field(pattern=PEER_ADDR), AfterValidator(_peer_addr)]


class _Strict(BaseModel):
    model_config = STRICT


class PutBody(_Strict):
    value: str
    lease: int | None = Field(default=None, ge=1, le=MAX_ID)
    prev_kv: bool = False


class CompareBody(_Strict):
    key: str = Field(min_length=1)
    target: Literal["value", "version", "create_revision", "mod_revision", "lease", "exists"]
    op: Literal["=", "!=", "<", ">"] = "="
    value: str | Annotated[int, Field(ge=-MAX_ID, le=MAX_ID)] | bool


class PutOp(_Strict):
    key: str = Field(min_length=1)
    value: str
    lease: int | None = Field(default=None, ge=1, le=MAX_ID)


class DeleteOp(_Strict):
    key: str = Field(min_length=1)
    prefix: bool = False


class GetOp(_Strict):
    key: str = Field(min_length=1)
    prefix: bool = False
    limit: int = Field(default=0, ge=0)


class TxnOpBody(_Strict):
    put: PutOp | None = None
    delete: DeleteOp | None = None
    get: GetOp | None = None


class TxnBody(_Strict):
    compare: list[CompareBody] = []
    success: list[TxnOpBody] = []
    failure: list[TxnOpBody] = []


class LeaseGrantBody(_Strict):
    ttl: int = Field(ge=1, le=9_000_000_000)
    id: int | None = Field(default=None, ge=1, le=MAX_ID)


class MemberAddBody(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    peer_addr: PeerAddr
    client_url: str | None = Field(default=None, pattern=r"^https?://")
    learner: bool = True
    # A learner that should become a voter once caught up (what `shoal server --join` asks).
    promote: bool = False


class AdvertiseBody(_Strict):
    client_url: str = Field(pattern=r"^https?://")
    peer_addr: PeerAddr


class TransferBody(_Strict):
    to: str = Field(min_length=1)


class CompactBody(_Strict):
    revision: int = Field(ge=1, le=MAX_ID)
