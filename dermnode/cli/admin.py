"""``dermnode peers``, ``dermnode destinations``, ``dermnode echo`` and ``dermnode resend``: the admin API's
operations from the command line. They work on the data directory's ledger and registry directly, so they
work whether the node runs or not; they start from the peers and destinations the node was last started (or
reloaded) with, its command-line flags included. A running node applies a change at its next association
(peers) or study (destinations), and its completion monitor picks up a resent study. No torch is imported."""

from __future__ import annotations

import argparse
import getpass
import socket
from collections.abc import Callable
from typing import Any

from dermnode.kernel.addresses import Address
from dermnode.kernel.errors import ConfigurationError, DermnodeError
from dermnode.kernel.settings import Peer, Settings

SettingsFrom = Callable[[argparse.Namespace], Settings]


def _by() -> str:
    """Who made a change, for the audit trail: the operating-system user on this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def _open(settings: Settings) -> Any:
    from dicom_node.ledger import Ledger
    from dicom_node.registry import Registry

    if not settings.ledger_path.is_file():
        raise DermnodeError(f"no ledger at {settings.ledger_path}: check --data-dir (or start the node once)")
    Ledger(settings.ledger_path).close()  # creates the tables a newer version needs
    return Registry(settings.ledger_path)


def cmd_peers(args: argparse.Namespace, settings_from: SettingsFrom) -> int:
    settings = settings_from(args)
    registry = _open(settings)
    settings = registry.as_configured_by_node(settings)
    try:
        if args.action == "add":
            try:
                peer = Peer.parse(args.peer)
            except ValueError as e:
                raise ConfigurationError(f"peer {args.peer!r}: {e}") from e
            registry.add_peer(peer, _by())
            print(f"allowed {args.peer}")
        elif args.action == "remove":
            registry.remove_peer(args.peer, settings, _by())
            print(f"removed {args.peer}")
        for p in registry.peers(settings):
            print(f"{p.ae_title}\t{p.host or 'any host'}\t{p.port or ''}")
    finally:
        registry.close()
    return 0


def cmd_destinations(args: argparse.Namespace, settings_from: SettingsFrom) -> int:
    settings = settings_from(args)
    registry = _open(settings)
    settings = registry.as_configured_by_node(settings)
    try:
        if args.action == "add":
            registry.add_destination(Address.parse(args.target), _by())
            print(f"added {args.target}")
        elif args.action == "remove":
            registry.remove_destination(args.target, settings, _by())
            print(f"removed {args.target}")
        echoes = registry.echoes()
        for d in registry.destinations(settings):
            last = echoes.get(d.ae_title) if isinstance(d, Address) else None
            seen = f"\tlast C-ECHO {'ok' if last.ok else 'failed'}: {last.detail}" if last else ""
            print(f"{d if isinstance(d, str) else d.describe()}{seen}")
    finally:
        registry.close()
    return 0


def cmd_echo(args: argparse.Namespace, settings_from: SettingsFrom) -> int:
    """C-ECHO a configured destination (by AE title) or any AE@HOST:PORT."""
    from dicom_node.verification import echo

    settings = settings_from(args)
    registry = _open(settings) if settings.ledger_path.is_file() else None
    try:
        if "@" in args.target:
            dest = Address.parse(args.target)
        elif registry is not None:
            dest = registry.destination(args.target, registry.as_configured_by_node(settings))
        else:
            raise DermnodeError(f"no ledger at {settings.ledger_path} to look {args.target!r} up in: "
                                "give AE@HOST:PORT or check --data-dir")
        result = echo(settings, dest)
        if registry is not None and not args.no_record:
            registry.record_echo(dest.ae_title, result.ok, result.detail, _by())
    finally:
        if registry is not None:
            registry.close()
    print(f"{result.destination}: {result.detail}")
    return 0 if result.ok else 1


def cmd_resend(args: argparse.Namespace, settings_from: SettingsFrom) -> int:
    from dicom_node.ledger import Ledger

    settings = settings_from(args)
    if not settings.ledger_path.is_file():
        raise DermnodeError(f"no ledger at {settings.ledger_path}: check --data-dir")
    ledger = Ledger(settings.ledger_path)
    try:
        for uid in args.study_uids:
            ledger.request_resend(uid, _by())
            print(f"{uid}: queued again; the running node analyses and delivers it (same output UIDs)")
    finally:
        ledger.close()
    return 0


def register(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None],
             settings_from: SettingsFrom) -> None:
    """Add the admin subcommands; each sets ``func(args) -> int``."""
    peers = sub.add_parser("peers", help="list, add or remove calling AEs allowed to send (no restart)")
    peers_sub = peers.add_subparsers(dest="action", required=True)
    common(peers_sub.add_parser("list", help="the allowed peers in force"))
    for action, meta, text in (("add", "AE[@HOST[:PORT]]", "allow a calling AE"),
                               ("remove", "AE", "stop allowing a calling AE")):
        p = peers_sub.add_parser(action, help=text)
        p.add_argument("peer", metavar=meta)
        common(p)
    peers.set_defaults(func=lambda a: cmd_peers(a, settings_from))

    dests = sub.add_parser("destinations", help="list, add or remove where results are sent (no restart)")
    dests_sub = dests.add_subparsers(dest="action", required=True)
    common(dests_sub.add_parser("list", help="the destinations in force, with their last C-ECHO"))
    for action, meta, text in (("add", "AE@HOST:PORT[/tls]", "send results there too"),
                               ("remove", "AE", "stop sending results there")):
        p = dests_sub.add_parser(action, help=text)
        p.add_argument("target", metavar=meta)
        common(p)
    dests.set_defaults(func=lambda a: cmd_destinations(a, settings_from))

    echo = sub.add_parser("echo", help="C-ECHO a destination from this node (exit 0 if it answers)")
    common(echo)
    echo.add_argument("target", metavar="DEST", help="a destination's AE title, or AE@HOST:PORT")
    echo.add_argument("--no-record", action="store_true", help="do not record the result in the ledger")
    echo.set_defaults(func=lambda a: cmd_echo(a, settings_from))

    resend = sub.add_parser("resend", help="analyse and deliver a failed (or finished) study again")
    common(resend)
    resend.add_argument("study_uids", nargs="+", metavar="STUDY_UID")
    resend.set_defaults(func=lambda a: cmd_resend(a, settings_from))
