"""`shoal.testing` starts secured members: `LocalCluster(tls=..., token=...)` gives a TLS
cluster with ACLs on, bootstrapped with the chosen token, that the harness (and a client
built from `env()`) speaks to, while a client without the token or the CA gets nowhere."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from unittest import mock

import httpx
import pytest

from shoal.client import ControlPlane
from shoal.testing import ServerProcess, local_cluster

from .conftest import Pki


def test_a_tls_acl_cluster_from_the_harness_takes_its_token_and_only_it(
    tmp_path: Path, pki: Pki
) -> None:
    token = secrets.token_hex(32)
    with local_cluster(tmp_path, 3, tls=pki.server_tls, token=token) as cluster:
        leader = cluster.leader()
        assert leader.url.startswith("https://")
        follower = next(p for p in cluster.live() if p is not leader)
        # The harness's requests carry the token and the CA: a write through a follower.
        assert follower.request("PUT", "/api/v1/kv/h/a", json={"value": "1"}).status_code == 200
        # An SDK client made from env() alone (what a child process gets) works too.
        with mock.patch.dict(os.environ, follower.env()), ControlPlane(follower.url) as plane:
            assert plane.get("h/a").value == "1"
        # Without the token: 401; with a wrong one: 401; without the CA: no handshake.
        with pki.client(cert=(pki.client_cert, pki.client_key)) as client:
            assert client.get(leader.url + "/api/v1/kv/h/a").status_code == 401
            wrong = {"authorization": "Bearer " + "0" * 64}
            assert client.get(leader.url + "/api/v1/kv/h/a", headers=wrong).status_code == 401
        with pytest.raises(httpx.ConnectError):
            httpx.get(leader.url + "/healthz", timeout=5)
        # A killed member restarts with the same flags and its token still works there.
        leader.kill()
        leader.start().wait_ready()
        assert leader.get("/api/v1/kv/h/a?consistency=stale").json()["value"] == "1"


def test_a_member_bootstrapped_with_another_token_is_an_error_not_a_hang(tmp_path: Path) -> None:
    first = ServerProcess("n1", tmp_path / "n1" / "data", token=secrets.token_hex(32)).start()
    try:
        first.wait_ready()
        other = ServerProcess(
            "n1", first.data_dir, first.client_port, first.peer_port, token=secrets.token_hex(32)
        )
        with pytest.raises(RuntimeError, match="another token"):
            other.bootstrap(10)
    finally:
        first.kill()


def test_a_chosen_bootstrap_token_must_be_hard_to_guess(tmp_path: Path) -> None:
    member = ServerProcess("n1", tmp_path / "n1" / "data", extra=["--acl"]).start()
    try:
        member.wait_ready()
        for weak in ("short", "x" * 31, "has space " * 4, 7):
            answer = member.request("POST", "/api/v1/acl/bootstrap", json={"token": weak})
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"] == "invalid_token"
        odd = member.request("POST", "/api/v1/acl/bootstrap", json={"secret": "x" * 40})
        assert odd.status_code == 400
        # Nothing was bootstrapped by the refusals: a good one still works, once.
        chosen = secrets.token_urlsafe(32)
        made = member.request("POST", "/api/v1/acl/bootstrap", json={"token": chosen})
        assert made.status_code == 200 and made.json()["token"] == chosen
        member.token = chosen
        assert member.get("/api/v1/acl/token/self").json()["policies"] == ["global-management"]
        again = member.request("POST", "/api/v1/acl/bootstrap", json={"token": chosen + "y"})
        assert again.status_code == 409
    finally:
        member.kill()


def test_a_plain_member_needs_no_token(tmp_path: Path) -> None:
    member = ServerProcess("n1", tmp_path / "n1" / "data").start()
    try:
        member.wait_ready()
        assert member.url.startswith("http://")
        assert member.env() == {"SHOAL_ENDPOINTS": member.url}
        with mock.patch.dict(os.environ, {}, clear=True), ControlPlane(member.url) as plane:
            plane.put("p/a", "1")
            assert plane.get("p/a").value == "1"
    finally:
        member.kill()


def test_the_cli_bootstraps_with_a_secret_from_a_file_and_refuses_a_weak_one(
    tmp_path: Path,
) -> None:
    member = ServerProcess("n1", tmp_path / "n1" / "data", extra=["--acl"]).start()
    try:
        member.wait_ready()

        def bootstrap(secret: str) -> subprocess.CompletedProcess[str]:
            path = tmp_path / "secret"
            path.write_text(secret + "\n")  # as `echo` or an editor leaves it
            return subprocess.run(
                [sys.executable, "-m", "shoal.cli.main", "acl", "bootstrap",
                 "--token-file", str(path), "--endpoints", member.url, "--json"],
                capture_output=True, text=True, timeout=60, env={**os.environ, "SHOAL_TOKEN": ""},
            )  # fmt: skip

        weak = bootstrap("too-short")
        assert weak.returncode != 0
        assert "token" in (weak.stderr + weak.stdout).lower()
        chosen = secrets.token_urlsafe(32)
        made = bootstrap(chosen)
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["token"] == chosen
        member.token = chosen
        assert member.get("/api/v1/acl/token/self").json()["policies"] == ["global-management"]
    finally:
        member.kill()
