"""Helpers for testing systems built on shoal: real server processes on loopback."""

from .processes import LocalCluster, ServerProcess, free_port, local_cluster, wait_for

__all__ = ["LocalCluster", "ServerProcess", "free_port", "local_cluster", "wait_for"]
