"""Checking a cluster spec (``{"ps": ["host:port", ...], "worker": [...]}``) before any server starts: one line per
bad entry, instead of a TensorFlow traceback or a server that waits forever on a port that cannot exist."""

from __future__ import annotations

import errno
import socket

JOBS = ("ps", "worker")


def member_name(job: str, index: int) -> str:
    """How messages name a member: ``ps 0``, ``chief (worker 0)``, ``worker 1``."""
    return "chief (worker 0)" if (job, index) == ("worker", 0) else f"{job} {index}"


def _address_problem(address) -> str | None:
    if not isinstance(address, str):
        return f"{address!r} is not a \"host:port\" string"
    host, colon, port = address.rpartition(":")
    if not colon or not host:
        return f"{address!r} has no port (expected host:port)"
    if not (port.isascii() and port.isdigit()):
        return f"{address!r}: port {port!r} is not a number"
    if not 1 <= int(port) <= 65535:
        return f"{address!r}: port {port} is out of range 1..65535"
    return None


def spec_problems(spec) -> list[str]:
    """Every problem of a cluster spec, one line each (empty: the spec is usable)."""
    if not isinstance(spec, dict):
        return [f"the cluster must be a JSON object {{\"ps\": [...], \"worker\": [...]}}, got {type(spec).__name__}"]
    problems = [f"unknown job {job!r} (only ps and worker)" for job in spec if job not in JOBS]
    for job in JOBS:
        addresses = spec.get(job)
        if not isinstance(addresses, list):
            problems.append(f'"{job}" must be a list of "host:port" addresses, got {addresses!r}' if job in spec
                            else f'the cluster needs at least one "{job}" address')
            continue
        if not addresses:
            problems.append(f'the cluster needs at least one "{job}" address')
        problems += [f"{job}[{index}] {problem}" for index, address in enumerate(addresses)
                     if (problem := _address_problem(address))]
    seen: dict[str, str] = {}
    for job in JOBS:
        for index, address in enumerate(spec.get(job) if isinstance(spec.get(job), list) else []):
            if isinstance(address, str) and address in seen:
                problems.append(f"{job}[{index}] {address!r} is also {seen[address]}")
            seen.setdefault(address if isinstance(address, str) else repr(address), f"{job}[{index}]")
    return problems


def own_port_problem(address: str) -> str | None:
    """Why this machine cannot serve ``address`` (its port in use), or ``None`` (free, or not an address of this
    machine: then the member on that machine will find out)."""
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to a server
        try:
            probe.bind((host.strip("[]"), int(port)))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return f"{address}: port {port} is in use on this machine (by another process)"
            if err.errno == errno.EACCES:
                return f"{address}: port {port} may not be opened by this user"
            return None  # not an address of this machine (EADDRNOTAVAIL), or unresolvable here
    return None
