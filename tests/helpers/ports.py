"""Free loopback ports for the real servers tests start (never fixed ports).

Ports come from below the kernel's ephemeral range (ip_local_port_range, 32768-60999 by default): a port the
kernel handed out for a moment would also be handed to the outgoing connections of the many processes the
suite runs, so between this check and the server's bind a client socket could take it. Below the range only
servers bind, and each port is checked free before it is returned; the random start keeps parallel workers
apart.
"""

from __future__ import annotations

import random
import socket

_LOW, _HIGH = 20000, 32000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    high = min(_HIGH, _ephemeral_low() - 1)
    for _ in range(200):
        port = random.randint(_LOW, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
