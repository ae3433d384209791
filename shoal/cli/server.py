"""`shoal server`: run one control-plane member.

Settings come from flags, else from `--config FILE` (TOML; keys are the flag names with
underscores), else from the defaults below. They are checked here, with messages that name
the flag at fault, before anything starts; then a `MemberConfig` goes to
`shoal.node.server.run`. `--join URL` first asks the running cluster at URL to add this
member as a learner (the leader promotes it once it has caught up).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shoal.client import ControlPlane, ShoalError
from shoal.node.peer_addr import split_peer_addr
from shoal.security.tls import MemberTls, TlsConfigError

from .common import err, fail

if TYPE_CHECKING:
    from shoal.node.member import MemberConfig

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

DEFAULTS: dict[str, Any] = {
    "name": "default",
    "data_dir": "./.shoal",
    "client_addr": "127.0.0.1:7700",
    "peer_addr": "127.0.0.1:7701",
    "initial_cluster": None,
    "join": None,
    "tick_ms": 50,
    "election_ticks": 10,
    "snapshot_entries": 100_000,
    # Connection limits of the HTTP API (docs/operations.md says why these defaults).
    "header_timeout": 10.0,
    "idle_timeout": 60.0,
    "max_connections": 10_000,
    "force_new_cluster": False,
    # shoal.security: TLS files (all three or none), mTLS for clients, ACL enforcement.
    "tls_cert": None,
    "tls_key": None,
    "tls_ca": None,
    "client_cert_required": False,
    "acl": False,
}


def parse_addr(text: str, flag: str) -> tuple[str, int]:
    """`"host:port"` -> `("host", port)`, or a `BadParameter` naming `flag`: the same rule
    as the API's (`shoal.node.peer_addr`), since other members dial these addresses."""
    try:
        return split_peer_addr(str(text).strip())
    except ValueError as error:
        raise typer.BadParameter(
            f"{text!r} is not host:port (e.g. 127.0.0.1:7701, port 1-65535): {error}",
            param_hint=flag,
        ) from None


def parse_name(text: str, flag: str) -> str:
    if not NAME_RE.match(text):
        raise typer.BadParameter(
            f"{text!r}: a member name is 1-64 letters, digits, '_', '.' or '-'", param_hint=flag
        )
    return text


def parse_initial_cluster(value: str | dict[str, Any]) -> dict[str, tuple[str, int]]:
    """`"n1=h:p,n2=h:p"` (or a TOML table `{n1 = "h:p"}`) -> `{"n1": ("h", p), ...}`."""
    flag = "--initial-cluster"
    items: list[tuple[str, str]] = []
    if isinstance(value, dict):
        items = [(str(k), str(v)) for k, v in value.items()]
    else:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            name, sep, addr = part.partition("=")
            if not sep:
                raise typer.BadParameter(f"{part!r} is not name=host:port", param_hint=flag)
            items.append((name.strip(), addr.strip()))
    cluster: dict[str, tuple[str, int]] = {}
    for name, addr in items:
        if name in cluster:
            raise typer.BadParameter(f"member {name!r} is listed twice", param_hint=flag)
        cluster[parse_name(name, flag)] = parse_addr(addr, flag)
    if not cluster:
        raise typer.BadParameter("names no member", param_hint=flag)
    return cluster


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as error:
        raise typer.BadParameter(
            f"cannot read {path}: {error.strerror}", param_hint="--config"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise typer.BadParameter(
            f"{path} is not valid TOML: {error}", param_hint="--config"
        ) from None
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise typer.BadParameter(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}",
            param_hint="--config",
        )
    return data


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The checked settings of `shoal server`, before they become a `MemberConfig`."""

    name: str
    data_dir: Path
    client_addr: tuple[str, int]
    peer_addr: tuple[str, int]
    initial_cluster: dict[str, tuple[str, int]]
    join: str | None
    tick_ms: int
    election_ticks: int
    snapshot_entries: int = 100_000
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 10_000
    force_new_cluster: bool = False
    tls: MemberTls | None = None
    acl: bool = False


def resolve_tls(pick: Callable[[str], Any]) -> MemberTls | None:
    """The TLS files, checked (loaded once) so a bad one is named before anything starts."""
    files = {key: pick(key) for key in ("tls_cert", "tls_key", "tls_ca")}
    required = pick("client_cert_required")
    if not isinstance(required, bool):
        raise typer.BadParameter("must be true or false", param_hint="--client-cert-required")
    given = {key for key, value in files.items() if value is not None}
    if not given:
        if required:
            raise typer.BadParameter(
                "needs TLS: pass --tls-cert, --tls-key and --tls-ca",
                param_hint="--client-cert-required",
            )
        return None
    missing = sorted(set(files) - given)
    if missing:
        flags = ", ".join("--" + key.replace("_", "-") for key in missing)
        raise typer.BadParameter(
            f"TLS needs all of --tls-cert, --tls-key and --tls-ca; missing {flags}",
            param_hint="--" + missing[0].replace("_", "-"),
        )
    tls = MemberTls(
        cert=Path(str(files["tls_cert"])),
        key=Path(str(files["tls_key"])),
        ca=Path(str(files["tls_ca"])),
        client_cert_required=required,
    )
    try:
        tls.check()
    except TlsConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--tls-cert") from None
    return tls


def resolve_settings(flags: dict[str, Any], config_file: Path | None) -> ServerSettings:
    """Flags (None = not given) over the config file over the defaults, checked."""
    from_file = load_config_file(config_file) if config_file is not None else {}

    def pick(key: str) -> Any:
        if flags.get(key) is not None:
            return flags[key]
        return from_file.get(key, DEFAULTS[key])

    name = parse_name(str(pick("name")), "--name")
    client = parse_addr(str(pick("client_addr")), "--client-addr")
    peer_given = flags.get("peer_addr") is not None or "peer_addr" in from_file
    peer = parse_addr(str(pick("peer_addr")), "--peer-addr")
    raw_cluster = pick("initial_cluster")
    if raw_cluster is None:
        cluster = {name: peer}
    else:
        if not isinstance(raw_cluster, str | dict):
            raise typer.BadParameter("must be a string or a table", param_hint="--initial-cluster")
        cluster = parse_initial_cluster(raw_cluster)
        if name not in cluster:
            raise typer.BadParameter(
                f"this member's name {name!r} is not in it ({', '.join(cluster)}); "
                "pass --name, or list this member",
                param_hint="--initial-cluster",
            )
        if not peer_given:
            peer = cluster[name]
        elif cluster[name] != peer:
            raise typer.BadParameter(
                f"it gives {name} the peer address {cluster[name][0]}:{cluster[name][1]} "
                f"but --peer-addr is {peer[0]}:{peer[1]}",
                param_hint="--initial-cluster",
            )
    if client == peer:
        raise typer.BadParameter("must differ from --peer-addr", param_hint="--client-addr")
    tick_ms, election_ticks = pick("tick_ms"), pick("election_ticks")
    if not isinstance(tick_ms, int) or tick_ms < 1:
        raise typer.BadParameter(
            "must be a whole number of milliseconds >= 1", param_hint="--tick-ms"
        )
    if not isinstance(election_ticks, int) or election_ticks < 2:
        raise typer.BadParameter("must be a whole number >= 2", param_hint="--election-ticks")
    snapshot_entries = pick("snapshot_entries")
    if not isinstance(snapshot_entries, int) or snapshot_entries < 1:
        raise typer.BadParameter("must be a whole number >= 1", param_hint="--snapshot-entries")
    join = pick("join")
    if join is not None and not isinstance(join, str):
        raise typer.BadParameter("must be the URL of a running member", param_hint="--join")
    timeouts = {}
    for key in ("header_timeout", "idle_timeout"):
        value = pick(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            flag = "--" + key.replace("_", "-")
            raise typer.BadParameter("must be a number of seconds > 0", param_hint=flag)
        timeouts[key] = float(value)
    max_connections = pick("max_connections")
    if not isinstance(max_connections, int) or isinstance(max_connections, bool):
        raise typer.BadParameter("must be a whole number >= 1", param_hint="--max-connections")
    if max_connections < 1:
        raise typer.BadParameter("must be a whole number >= 1", param_hint="--max-connections")
    force = pick("force_new_cluster")
    if not isinstance(force, bool):
        raise typer.BadParameter("must be true or false", param_hint="--force-new-cluster")
    if force and join is not None:
        raise typer.BadParameter("cannot be combined with --join", param_hint="--force-new-cluster")
    acl = pick("acl")
    if not isinstance(acl, bool):
        raise typer.BadParameter("must be true or false", param_hint="--acl")
    return ServerSettings(
        tls=resolve_tls(pick),
        acl=acl,
        name=name,
        data_dir=Path(str(pick("data_dir"))),
        client_addr=client,
        peer_addr=peer,
        initial_cluster=cluster,
        join=join,
        tick_ms=tick_ms,
        election_ticks=election_ticks,
        snapshot_entries=snapshot_entries,
        header_timeout=timeouts["header_timeout"],
        idle_timeout=timeouts["idle_timeout"],
        max_connections=max_connections,
        force_new_cluster=force,
    )


def member_config(settings: ServerSettings) -> MemberConfig:
    from shoal.node.member import MemberConfig

    return MemberConfig(
        name=settings.name,
        data_dir=settings.data_dir,
        client_host=settings.client_addr[0],
        client_port=settings.client_addr[1],
        peer_host=settings.peer_addr[0],
        peer_port=settings.peer_addr[1],
        initial_cluster=dict(settings.initial_cluster),
        join=settings.join is not None,
        tick_seconds=settings.tick_ms / 1000,
        election_ticks=settings.election_ticks,
        snapshot_entries=settings.snapshot_entries,
        header_timeout=settings.header_timeout,
        idle_timeout=settings.idle_timeout,
        max_connections=settings.max_connections,
        force_new_cluster=settings.force_new_cluster,
        tls=settings.tls,
        acl=settings.acl,
    )


def join_cluster(settings: ServerSettings, explicit_cluster: bool) -> ServerSettings:
    """Ask the cluster at `settings.join` to add this member as a learner.

    Returns the settings with the cluster's members as the initial peers (unless
    --initial-cluster named them). A data directory that already holds state means this
    member joined before and is restarting, so it is not added twice.
    """
    assert settings.join is not None
    host, port = settings.peer_addr
    try:
        tls = settings.tls  # a TLS cluster is asked with this member's own certificate
        with ControlPlane(
            settings.join,
            tls_ca=str(tls.ca) if tls else None,
            tls_cert=str(tls.cert) if tls else None,
            tls_key=str(tls.key) if tls else None,
        ) as plane:
            status = plane.cluster_status()
            already = any(m.name == settings.name for m in status.members)
            restarting = settings.data_dir.is_dir() and any(settings.data_dir.iterdir())
            if not already and not restarting:
                client_host, client_port = settings.client_addr
                plane.add_member(
                    settings.name,
                    f"{host}:{port}",
                    learner=True,
                    client_url=f"{'https' if tls else 'http'}://{client_host}:{client_port}",
                    promote=True,  # the leader promotes it once it has caught up
                )
                err.print(f"asked {settings.join} to add {settings.name} as a learner")
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--join") from None
    except ShoalError as error:
        raise fail(f"could not join the cluster at {settings.join}: {error.message}") from None
    if explicit_cluster:
        return settings
    cluster = {settings.name: settings.peer_addr}
    for member in status.members:
        if member.peer_addr and member.name != settings.name:
            cluster[member.name] = parse_addr(member.peer_addr, "--join")
    return dataclasses.replace(settings, initial_cluster=cluster)


def server(
    name: Annotated[
        str | None, typer.Option(help="This member's name.  [default: default]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the WAL and snapshots live.  [default: ./.shoal]")
    ] = None,
    client_addr: Annotated[
        str | None, typer.Option(help="host:port of the HTTP API.  [default: 127.0.0.1:7700]")
    ] = None,
    peer_addr: Annotated[
        str | None,
        typer.Option(help="host:port other members reach this one on.  [default: 127.0.0.1:7701]"),
    ] = None,
    initial_cluster: Annotated[
        str | None,
        typer.Option(
            help="The founding members, n1=host:port,n2=host:port (peer addresses). "
            "[default: just this member]"
        ),
    ] = None,
    join: Annotated[
        str | None,
        typer.Option(
            help="URL(s) of running members, comma-separated: join their cluster as a learner.",
            metavar="URLS",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML file of these settings (underscored names); flags win.", metavar="FILE"
        ),
    ] = None,
    tick_ms: Annotated[int | None, typer.Option(help="Raft tick in ms.  [default: 50]")] = None,
    election_ticks: Annotated[
        int | None, typer.Option(help="Ticks without a leader before an election.  [default: 10]")
    ] = None,
    snapshot_entries: Annotated[
        int | None,
        typer.Option(help="Applied entries between snapshots (log compaction). [default: 100000]"),
    ] = None,
    header_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds a client has to send a request's headers (and between body "
            "chunks) before the connection is closed.  [default: 10]"
        ),
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds an idle keep-alive connection is kept.  [default: 60]"),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(help="Open HTTP connections at most; more are refused.  [default: 10000]"),
    ] = None,
    force_new_cluster: Annotated[
        bool | None,
        typer.Option(
            "--force-new-cluster",
            help="Recovery: start as the only voter of a new cluster, keeping this member's "
            "data (when the old cluster's quorum is lost for good). Remove it afterwards.",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="PEM certificate of this member: HTTPS for clients, mTLS to peers."),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option(help="PEM CA that signs every member's (and client's) certificate."),
    ] = None,
    client_cert_required: Annotated[
        bool | None,
        typer.Option(
            "--client-cert-required",
            help="Refuse HTTPS clients without a certificate signed by --tls-ca (mTLS).",
        ),
    ] = None,
    acl: Annotated[
        bool | None,
        typer.Option(
            "--acl",
            help="Enforce ACL tokens: default deny; `shoal acl bootstrap` makes the first "
            "token (docs/security.md).",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="Log lines as text or json (one object per line).  "
            "[default: $SHOAL_LOG_FORMAT, else text]",
        ),
    ] = None,
) -> None:
    """Run a control-plane member (a cluster of one unless told otherwise)."""
    flags = {
        "name": name,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "client_addr": client_addr,
        "peer_addr": peer_addr,
        "initial_cluster": initial_cluster,
        "join": join,
        "tick_ms": tick_ms,
        "election_ticks": election_ticks,
        "snapshot_entries": snapshot_entries,
        "header_timeout": header_timeout,
        "idle_timeout": idle_timeout,
        "max_connections": max_connections,
        "force_new_cluster": force_new_cluster,
        "tls_cert": str(tls_cert) if tls_cert is not None else None,
        "tls_key": str(tls_key) if tls_key is not None else None,
        "tls_ca": str(tls_ca) if tls_ca is not None else None,
        "client_cert_required": client_cert_required,
        "acl": acl,
    }
    settings = resolve_settings(flags, config)
    if settings.join is not None:
        explicit = initial_cluster is not None or (
            config is not None and "initial_cluster" in load_config_file(config)
        )
        settings = join_cluster(settings, explicit)
    start_logging("server", log_format)
    from shoal.dashboard import dashboard_app
    from shoal.node.server import run

    host, port = settings.client_addr
    # The dashboard reaches this member through its own HTTP API, like any client.
    ui = dashboard_app(f"http://{_reachable(host)}:{port}", tls=settings.tls)
    raise typer.Exit(run(member_config(settings), mounts={"/ui": ui}))


def _reachable(host: str) -> str:
    """The address to call a server on that listens on `host` (a wildcard: loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def start_logging(process: str, log_format: str | None) -> None:
    """shoal.observe's one logging setup; a bad format is a usage error naming its source."""
    from shoal.observe.logs import ENV_FORMAT, setup_logging

    try:
        setup_logging(process, log_format=log_format)
    except ValueError as error:
        hint = "--log-format" if log_format is not None else ENV_FORMAT
        raise typer.BadParameter(str(error).split(": ", 1)[-1], param_hint=hint) from None
