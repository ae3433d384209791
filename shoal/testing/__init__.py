"""Helpers for testing systems built on shoal: real server processes on loopback, real
service processes (`AppProcess`), and a tiny HTTP service to health-check."""

from .apps import AppProcess, uvicorn_command
from .processes import (
    LocalCluster,
    ServerProcess,
    ServerTls,
    free_port,
    local_cluster,
    wait_for,
)
from .services import HttpService

__all__ = [
    "AppProcess",
    "HttpService",
    "LocalCluster",
    "ServerProcess",
    "ServerTls",
    "free_port",
    "local_cluster",
    "uvicorn_command",
    "wait_for",
]
