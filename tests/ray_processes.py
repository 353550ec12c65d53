"""Ray processes on this machine, for the tests that start Ray clusters by hand: ports, the
processes of one cluster (found by its temp dir or GCS port) and how to stop only those (`ray stop
--force` would stop every Ray on the machine, other tests' included)."""

import os
import re
import signal
import socket
import sys
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes() -> dict:
    """{pid: (parent pid, command line)} of the processes on this machine."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            found[int(entry.name)] = (parent, command.strip())
    return found


def process_tree(processes, marks, port=None) -> dict:
    """{pid: command line} of the processes whose command line names one of `marks` (a node's
    temp dir) or the GCS `port`, and of all their descendants (Ray's workers rename themselves
    `ray::...`)."""
    pattern = re.compile(rf":{port}\b") if port else None
    chosen = {pid for pid, (_, command) in processes.items()
              if any(mark in command for mark in marks) or (pattern and pattern.search(command))}
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in processes.items() if parent in chosen} - chosen
        chosen |= children
        grew = bool(children)
    chosen.discard(os.getpid())
    return {pid: processes[pid][1] for pid in chosen}


def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def forget_cluster(port):
    """`ray start --head` names its GCS in /tmp/ray/ray_current_cluster, where `ray.init()`
    looks for a cluster to join; `ray stop` removes it, and so does this, if it is ours."""
    current = Path("/tmp/ray/ray_current_cluster")
    try:
        if current.read_text().strip().endswith(f":{port}"):
            current.unlink()
    except OSError:
        pass
