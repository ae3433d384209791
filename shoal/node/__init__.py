"""The I/O shell of a control-plane member: WAL and snapshot files, peer transport, the
asyncio driver of the Raft core, and the HTTP API."""
