"""`shoal up` with `security:`: the embedded control plane runs TLS and ACLs, its ACLs are
bootstrapped with the manifest's token, and the service and the gateway it starts get the
token and the TLS files, so the service registers and is called through the gateway."""

from __future__ import annotations

import os
import secrets
import signal
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from shoal.cli.up.control import request
from shoal.cli.up.manifest import ManifestError, load_manifest
from shoal.security.certs import init_certs
from shoal.testing import free_port, wait_for

HELLO = """
import argparse, logging
from flask import Flask, jsonify
import shoal

app = Flask(__name__)
svc = shoal.Service("hello", app=app)


@app.get("/hello")
def hello():
    return jsonify(served_by=svc.instance_id)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=parser.parse_args().port)
"""

TLS = """\
  tls:
    ca: certs/ca.pem
    cert: certs/member.pem
    key: certs/member-key.pem
    client_cert: certs/client.pem
    client_key: certs/client-key.pem
"""


def manifest(root: Path, control: int, gateway: int, security: str) -> Path:
    path = root / "shoal.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            name: secured
            control_plane: {{port: {control}}}
            config:
              hello/greeting: {{content: "hi"}}
            services:
              hello: {{command: "python hello.py --port {{port}}"}}
            gateway:
              port: {gateway}
              routes: [{{prefix: /hello, service: hello}}]
            """)
        + security
    )
    return path


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}, **extra}


def test_up_with_tls_and_acls_registers_a_service_reached_through_the_gateway(
    tmp_path: Path,
) -> None:
    issued = init_certs(tmp_path / "certs")
    (tmp_path / "hello.py").write_text(HELLO)
    control, gateway = free_port(), free_port()
    path = manifest(tmp_path, control, gateway, "security:\n" + TLS + "  token: ${UP_TOKEN}\n")
    token = secrets.token_hex(32)
    data, log = tmp_path / ".shoal", tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal.cli.main", "up", str(path)],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=_env(UP_TOKEN=token),
        )  # fmt: skip

    def all_up() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            answer = request(data / "up.sock", {"op": "ps"})
        except OSError:
            return False
        replicas = [r for rs in answer["services"].values() for r in rs]
        return bool(replicas) and all(r["state"] == "up" for r in replicas)

    try:
        wait_for(all_up, 120, interval=0.1, what="the secured app under shoal up")
        base = f"https://127.0.0.1:{control}"
        instances = base + "/api/v1/services/hello/instances"
        with httpx.Client(
            verify=ssl.create_default_context(cafile=str(issued.ca)), timeout=5
        ) as anonymous:
            assert anonymous.get(instances).status_code == 401  # ACLs on, over TLS
        root = {"authorization": f"Bearer {token}"}
        with httpx.Client(
            verify=ssl.create_default_context(cafile=str(issued.ca)), headers=root, timeout=5
        ) as http:
            # It registers with the token (just after its health path answers).
            wait_for(
                lambda: [i["id"] for i in http.get(instances).json()["instances"]] == ["hello-1"],
                60,
                what="hello-1 registered",
            )
            greeting = http.get(base + "/api/v1/config/hello/greeting").json()
            assert greeting["content"] == "hi"  # `shoal up` seeded it with the token
        # Plain HTTP is not spoken by the control plane.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{control}/healthz", timeout=2)
        # The gateway found the service (registry calls with the token, over TLS).
        answer = wait_for(
            lambda: (
                (r := httpx.get(f"http://127.0.0.1:{gateway}/hello", timeout=5)).is_success and r
            ),
            60,
            what="the gateway to route /hello",
        )
        assert answer.json() == {"served_by": "hello-1"}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "ACLs bootstrapped" in log.read_text()


def test_security_problems_are_reported_before_anything_starts(tmp_path: Path) -> None:
    unset = manifest(tmp_path, 7700, 8080, "security:\n  token: ${UP_TOKEN_UNSET_HERE}\n")
    with pytest.raises(ManifestError, match=r"UP_TOKEN_UNSET_HERE.* is not set"):
        load_manifest(unset)
    weak = manifest(tmp_path, 7700, 8080, "security:\n  token: secret\n")
    with pytest.raises(ManifestError, match=r"security\.token: must be 32"):
        load_manifest(weak)
    missing = manifest(tmp_path, 7700, 8080, "security:\n" + TLS)
    with pytest.raises(ManifestError) as error:
        load_manifest(missing)
    assert "security.tls.ca: certs/ca.pem does not exist" in error.value.problems
    half = manifest(tmp_path, 7700, 8080, "security:\n  tls: {ca: ca.pem, cert: c.pem}\n")
    with pytest.raises(ManifestError, match="cert and key together"):
        load_manifest(half)
    unknown = manifest(tmp_path, 7700, 8080, "security:\n  acl: true\n")
    with pytest.raises(ManifestError, match=r"security\.acl"):
        load_manifest(unknown)


def test_a_manifest_without_security_is_unchanged(tmp_path: Path) -> None:
    spec, _ = load_manifest(manifest(tmp_path, 7700, 8080, ""))
    assert spec.security is None
