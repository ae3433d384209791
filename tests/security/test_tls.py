"""TLS for clients and mutual TLS between members, with real processes on loopback.

A 3-member TLS cluster replicates and forwards over HTTPS and mTLS; a member holding a
certificate from another CA neither joins nor receives anything; a client without a
certificate is refused when one is required; an expired certificate is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shoal.client import ControlPlane
from shoal.node.transport import PeerTransport
from shoal.raft import Heartbeat, Message
from shoal.security.certs import new_authority, write_cert
from shoal.security.tls import MemberTls
from shoal.testing import ServerProcess, ServerTls, wait_for

from .conftest import Pki, tls_cluster


@contextlib.contextmanager
def running(*members: ServerProcess) -> Iterator[None]:
    try:
        for m in members:
            m.start()
        yield
    finally:
        for m in members:
            m.kill()


def leader_of(member: ServerProcess) -> str | None:
    leader: str | None = member.get("/api/v1/cluster?consistency=stale").json()["leader"]
    return leader


def test_a_three_member_tls_cluster_replicates_and_forwards(tmp_path: Path, pki: Pki) -> None:
    members = tls_cluster(tmp_path, pki, 3)
    with running(*members.values()):
        for m in members.values():
            m.wait_ready()
        leader = wait_for(lambda: leader_of(members["n1"]), 20, what="a leader")
        follower = next(m for name, m in members.items() if name != leader)
        # A write sent to a follower is forwarded to the leader over HTTPS (member cert).
        with ControlPlane(
            follower.url,
            tls_ca=str(pki.ca),
            tls_cert=str(pki.client_cert),
            tls_key=str(pki.client_key),
        ) as plane:
            revision = plane.put("tls/a", "1")
            assert revision > 0
        for m in members.values():
            kv = wait_for(
                lambda m=m: m.get("/api/v1/kv/tls/a?consistency=stale").json().get("value"),
                10,
                what=f"{m.name} to apply the write",
            )
            assert kv == "1"
        # Plain HTTP is not spoken on a TLS port.
        with pytest.raises(httpx.HTTPError):
            httpx.get(follower.url.replace("https://", "http://") + "/healthz", timeout=2)


def test_a_member_with_a_certificate_from_another_ca_cannot_join_or_receive(
    tmp_path: Path, pki: Pki
) -> None:
    members = tls_cluster(tmp_path, pki, 3)
    rogue_ca = new_authority("someone else's CA")
    rogue_cert, rogue_key = pki.leaf("rogue", authority=rogue_ca)
    rogue = members["n3"]
    rogue.tls = ServerTls(pki.ca, rogue_cert, rogue_key, trust=tmp_path / "rogue-ca.pem")
    write_cert(tmp_path / "rogue-ca.pem", rogue_ca.cert)
    with running(*members.values()):
        good = [members["n1"], members["n2"]]
        for m in good:
            m.wait_ready()
        rogue.wait_healthy()  # its own HTTPS port answers (it trusts our CA as a client)
        leader = wait_for(lambda: leader_of(members["n1"]), 20, what="a leader")
        assert leader in ("n1", "n2")
        assert good[0].request("PUT", "/api/v1/kv/x", json={"value": "1"}).status_code == 200
        # Five election timeouts (10 ticks of 50 ms each) of heartbeats and appends: the
        # rogue member must hear none of them -- no leader, nothing applied.
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            status = rogue.get("/api/v1/cluster?consistency=stale").json()
            assert status["leader"] is None
            assert status["applied_index"] == 0
            time.sleep(0.1)
        assert rogue.get("/readyz").status_code == 503


def test_a_client_without_a_certificate_is_refused_when_one_is_required(
    tmp_path: Path, pki: Pki
) -> None:
    [member] = tls_cluster(tmp_path, pki, 1, extra=["--client-cert-required"]).values()
    with running(member):
        member.wait_ready()
        with pki.client(cert=(pki.client_cert, pki.client_key)) as client:
            assert client.get(member.url + "/readyz").status_code == 200
        with pki.client() as client, pytest.raises(httpx.HTTPError):
            client.get(member.url + "/api/v1/kv/a")
        rogue = pki.leaf("stranger", authority=new_authority("another CA"))
        with pki.client(cert=rogue) as client, pytest.raises(httpx.HTTPError):
            client.get(member.url + "/api/v1/kv/a")


def test_an_expired_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    [member] = tls_cluster(tmp_path, pki, 1, extra=["--client-cert-required"]).values()
    with running(member):
        member.wait_ready()
        expired = pki.leaf("expired-client", expired=True)
        with pki.client(cert=expired) as client, pytest.raises(httpx.HTTPError):
            client.get(member.url + "/readyz")
    # ... and a member serving an expired certificate is not trusted by its clients.
    cert, key = pki.leaf("expired-member", expired=True)
    [stale] = tls_cluster(tmp_path / "b", pki, 1).values()
    stale.tls = ServerTls(pki.ca, cert, key)
    with running(stale):
        wait_for(lambda: "serving" in stale.log(), 20, what="the member to serve")
        with pki.client() as client, pytest.raises(httpx.ConnectError, match="expired"):
            client.get(stale.url + "/healthz")


def test_the_peer_transport_only_talks_to_members_signed_by_the_ca(pki: Pki) -> None:
    """In-process: the rogue dialer's frames never reach `on_messages`, a good one's do."""
    good = MemberTls(pki.member_cert, pki.member_key, pki.ca)
    rogue_files = pki.leaf("rogue-peer", authority=new_authority("rogue CA"))
    rogue = MemberTls(*rogue_files, ca=pki.ca)  # trusts our CA, but is not signed by it

    async def main() -> None:
        received: list[Message] = []
        rogue_lost: list[str] = []  # peers the rogue dialer failed to reach
        listener = PeerTransport(
            "b", "127.0.0.1", 0, {}, received.extend,
            server_ssl=good.peer_server(), client_ssl=good.peer_client(),
        )  # fmt: skip
        await listener.start()
        peers = {"b": ("127.0.0.1", listener.listen_port)}
        dialers = {
            name: PeerTransport(
                name,
                "127.0.0.1",
                0,
                peers,
                received.extend,
                rogue_lost.append if name == "x" else None,
                rng=random.Random(1),
                server_ssl=tls.peer_server(),
                client_ssl=tls.peer_client(),
            )
            for name, tls in (("a", good), ("x", rogue))
        }
        for d in dialers.values():
            await d.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not (any(m.src == "a" for m in received) and "b" in rogue_lost):
            assert loop.time() < deadline, (received, rogue_lost)
            for name, d in dialers.items():
                d.send([Heartbeat(src=name, dst="b", term=1, commit=0)])
            await asyncio.sleep(0.02)
        assert all(m.src == "a" for m in received)
        assert listener.inbound_members == ["a"]
        for t in (listener, *dialers.values()):
            await t.stop()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_bad_tls_files_stop_the_server_with_a_message_naming_them(tmp_path: Path, pki: Pki) -> None:
    [member] = tls_cluster(tmp_path, pki, 1).values()
    member.tls = ServerTls(pki.ca, pki.member_cert, pki.client_key)  # not the cert's key
    member.start()
    try:
        assert member.proc is not None
        assert member.proc.wait(30) != 0
        assert "--tls-cert" in member.log()
    finally:
        member.kill()


def test_client_options_reject_unreadable_tls_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load the TLS files"):
        ControlPlane("https://127.0.0.1:1", tls_ca=str(tmp_path / "missing.pem"))


def test_tls_refuses_anything_older_than_tls_1_2(pki: Pki) -> None:
    tls = MemberTls(pki.member_cert, pki.member_key, pki.ca)
    for context in (tls.api_server(), tls.peer_server(), tls.peer_client()):
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert context.verify_mode != ssl.CERT_NONE
