"""Command-line flags both servers share (the model flags of every inference entry point, plus where to listen and
how much one request may ask for), and building the model worker from them."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket

from typing import TYPE_CHECKING

from ..cli_args import add_backbone_args, add_model_args, load_from_args

if TYPE_CHECKING:
    from .session import ModelWorker

LOOPBACK = "127.0.0.1"


def add_server_args(parser: argparse.ArgumentParser, default_port: int) -> None:
    add_model_args(parser)
    add_backbone_args(parser)
    parser.add_argument("--host", default=LOOPBACK,
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every network)")
    parser.add_argument("--port", type=int, default=default_port, help=f"port to listen on (default {default_port})")
    parser.add_argument("--queue-size", type=int, default=8,
                        help="requests that may wait while the model answers another; more are refused as busy")
    parser.add_argument("--max-image-pixels", type=int, default=4096 * 4096,
                        help="largest image accepted (width x height); larger ones are refused with a message")
    parser.add_argument("--max-new-tokens-limit", type=int, default=1024,
                        help="most new tokens one reply may have; larger requests are capped to this")


def check_server_args(args: argparse.Namespace) -> None:
    """Refuse impossible values before the model loads."""
    for flag, value in (("--queue-size", args.queue_size), ("--max-image-pixels", args.max_image_pixels),
                        ("--max-new-tokens-limit", args.max_new_tokens_limit)):
        if value < 1:
            raise SystemExit(f"error: {flag} must be at least 1, got {value}.")
    if not 0 <= args.port <= 65535:
        raise SystemExit(f"error: --port must be in 0..65535, got {args.port}.")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def worker_from_args(args: argparse.Namespace) -> ModelWorker:
    """Load the checkpoint the flags name and start its worker."""
    from .session import ModelWorker

    return ModelWorker(load_from_args(args), max_waiting=args.queue_size)


def bind_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening), so a server says where it serves only once the port is
    its own; a port in use (or an address not of this machine) ends the command in one line (``OSError``)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise OSError(f"--host {host} is not an address of this machine ({err.strerror}).") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
    try:
        listener.bind(address)
    except OSError as err:
        listener.close()
        if err.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {host} is in use by another program; stop it or choose another --port.") \
                from None
        raise OSError(f"cannot listen on {host} port {port}: {err.strerror or err}.") from None
    return listener
