"""Helpers for testing systems built on shoal: real server processes on loopback, and a
tiny HTTP service to health-check."""

from .processes import LocalCluster, ServerProcess, free_port, local_cluster, wait_for
from .services import HttpService

__all__ = ["HttpService", "LocalCluster", "ServerProcess", "free_port", "local_cluster", "wait_for"]
