"""Everything the sandbox runs stays on 127.0.0.1: the address, and the check that no process
of the sandbox (servers, test hosts and all their children) listens anywhere else."""

from __future__ import annotations

import ipaddress
import socket

import psutil

LOOPBACK = "127.0.0.1"


def process_tree(root_pids: list[int]) -> set[int]:
    """The given PIDs (those still running) and all their descendants."""
    tree: set[int] = set()
    for pid in root_pids:
        try:
            tree.update([pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))])
        except psutil.NoSuchProcess:
            continue
    return tree


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def listening_sockets(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """(pid, "tcp"/"udp", address, port) of every listening TCP and unconnected UDP socket
    owned by `pids` (UDP has no LISTEN state: a bound socket without a peer receives)."""
    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.pid not in pids or not conn.laddr:
            continue
        tcp_listens = conn.type == socket.SOCK_STREAM and conn.status == psutil.CONN_LISTEN
        udp_receives = conn.type == socket.SOCK_DGRAM and not conn.raddr
        if tcp_listens or udp_receives:
            protocol = "tcp" if conn.type == socket.SOCK_STREAM else "udp"
            found.append((conn.pid, protocol, conn.laddr.ip, conn.laddr.port))
    return found


def check_loopback_only(root_pids: list[int]) -> None:
    """Fail if any process in these trees listens (TCP or UDP) on a non-loopback address."""
    offenders = [
        f"pid {pid} {protocol} {address}:{port}"
        for pid, protocol, address, port in listening_sockets(process_tree(root_pids))
        if not is_loopback(address)
    ]
    if offenders:
        raise SystemExit("sandbox: non-loopback listeners:\n" + "\n".join(offenders))
