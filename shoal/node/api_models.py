"""Request bodies of the native HTTP API (`/api/v1`). Every model forbids unknown fields,
so a typo is a clear 400 rather than a silently ignored option."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**63 - 1  # leases, revisions and compared numbers travel as 64-bit integers
PEER_ADDR = r"^[^:]+:([1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5])$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    peer_addr: str = Field(pattern=PEER_ADDR)
    client_url: str | None = Field(default=None, pattern=r"^https?://")
    learner: bool = True
    # A learner that should become a voter once caught up (what `shoal server --join` asks).
    promote: bool = False


class AdvertiseBody(_Strict):
    client_url: str = Field(pattern=r"^https?://")
    peer_addr: str = Field(pattern=PEER_ADDR)


class TransferBody(_Strict):
    to: str = Field(min_length=1)


class CompactBody(_Strict):
    revision: int = Field(ge=1, le=MAX_ID)
