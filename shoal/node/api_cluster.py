"""The cluster API: `/api/v1/cluster` -- status, membership changes, addresses, transfer.

Membership changes and transfers are steps handed to the member's loop (member.py: one
door into the Raft core) and run on the leader; a follower forwards them. A change is
refused (409) unless the configuration it produces keeps a quorum of voters the leader
hears from (reconfig.py). Each member records where clients and peers reach it under
`/_shoal/members/{name}` (server.py advertises it), which is how forwarding finds the
leader.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from ..kv import Put, PutResult
from ..raft import ConfChangeOp
from .api_errors import ApiError
from .api_models import AdvertiseBody, MemberAddBody, TransferBody
from .member import MEMBERS_PREFIX, Member
from .peer_addr import format_peer_addr, split_peer_addr
from .routing import Routing


def router(member: Member, routing: Routing) -> APIRouter:
    api = APIRouter()
    leader_only = routing.leader_only

    @api.get("/api/v1/cluster")
    async def cluster() -> Any:
        status = member.status
        members = []
        for name in sorted(status.conf.members | {member.name}):
            record = member.kv.get(MEMBERS_PREFIX + name.encode())
            info = json.loads(record.value) if record else {}
            progress = status.progress.get(name)
            members.append(
                {
                    "name": name,
                    "voter": name in status.conf.voters,
                    "leader": name == status.leader,
                    "client_url": info.get("client_url"),
                    "peer_addr": format_peer_addr(*info["peer"]) if "peer" in info else None,
                    "match_index": progress.match if progress else None,
                }
            )
        return {
            "member": member.name,
            "leader": status.leader,
            "term": status.term,
            "role": status.role.value,
            "commit_index": status.commit,
            "applied_index": status.applied,
            "revision": member.kv.revision,
            "members": members,
        }

    @api.post("/api/v1/cluster/members")
    async def add_member(body: MemberAddBody, request: Request) -> Any:
        host, port = split_peer_addr(body.peer_addr)
        op = ConfChangeOp.ADD_LEARNER if body.learner else ConfChangeOp.ADD_VOTER

        async def act() -> Any:
            index = await member.change_membership(
                op, body.name, (host, port), promote=body.learner and body.promote
            )
            if body.client_url:
                record = {"client_url": body.client_url, "peer": [host, port]}
                await member.propose(
                    Put(key=MEMBERS_PREFIX + body.name.encode(), value=json.dumps(record).encode())
                )
            return {"index": index, "name": body.name, "learner": body.learner}

        return await leader_only(request, act)

    @api.put("/api/v1/cluster/members/{name}/address")
    async def advertise(name: str, body: AdvertiseBody, request: Request) -> Any:
        """A member records where clients and peers reach it (each member does at start)."""
        if name not in member.status.conf.members:
            raise ApiError(404, "member_not_found", f"{name} is not a member of this cluster")
        host, port = split_peer_addr(body.peer_addr)
        record = json.dumps({"client_url": body.client_url, "peer": [host, port]}).encode()

        async def act() -> Any:
            result = await member.propose(Put(key=MEMBERS_PREFIX + name.encode(), value=record))
            assert isinstance(result, PutResult)
            return {"revision": result.revision}

        return await leader_only(request, act)

    @api.post("/api/v1/cluster/members/{name}/promote")
    async def promote(name: str, request: Request) -> Any:
        async def act() -> Any:
            await member.caught_up()  # the member's record may be in a write not applied
            try:
                peer = member.peer_of(name)
            except KeyError as error:
                raise ApiError(404, "member_not_found", f"{name} is not a member") from error
            index = await member.change_membership(ConfChangeOp.ADD_VOTER, name, peer)
            return {"index": index, "name": name}

        return await leader_only(request, act)

    @api.delete("/api/v1/cluster/members/{name}")
    async def remove_member(name: str, request: Request) -> Any:
        async def act() -> Any:
            index = await member.change_membership(ConfChangeOp.REMOVE, name, ("", 0))
            return {"index": index, "name": name}

        return await leader_only(request, act)

    @api.post("/api/v1/cluster/transfer")
    async def transfer(body: TransferBody, request: Request) -> Any:
        async def act() -> Any:
            await member.transfer_leadership(body.to)
            return {"transferring_to": body.to}

        return await leader_only(request, act)

    return api
