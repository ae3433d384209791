"""`shoal up`: a whole application -- control plane, services with replicas -- from one
manifest, supervised; `shoal scale` and `shoal restart` act on a running `up`.

`manifest.py` reads and checks `shoal.yaml`; `supervisor.py` runs it (processes, restarts
with backoff, logs, rolling restarts); `control.py` is the local socket through which
`shoal scale` / `shoal restart` / `shoal ps` talk to it; `commands.py` holds the typer
commands.
"""
