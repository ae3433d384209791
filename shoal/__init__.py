"""shoal: a Python platform for building systems out of many small services.

One ``pip install`` is meant to give a team a replicated control plane (Raft under a
revisioned key-value store), a service registry with health checking, a config center,
client-side load balancing with resilience policies, an HTTP gateway, an event bus, a
distributed job engine, a CLI and a web dashboard. Today only the Raft consensus core and
its deterministic simulator exist; see ``docs/architecture.md``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
