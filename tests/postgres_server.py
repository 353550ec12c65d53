"""A throwaway PostgreSQL server for the shared-storage tests and benchmarks: initdb in a
temporary directory, a free port, password authentication; run as the `postgres` user when
this process is root (the server refuses root). Nothing outside its directory is touched."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

PASSWORD = "s3cret-pw"


class Unavailable(Exception):
    """No PostgreSQL here (or no user to run it as); the message says why."""


def postgres_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def throwaway_postgres():
    """Yields (URL with password, the same URL without) of a database `studies` on a fresh
    server; stops the server and removes its files afterwards."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise Unavailable("PostgreSQL is not installed here (make test installs Debian's postgresql)")
    as_user, account = [], None
    if os.geteuid() == 0:
        import pwd

        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no postgres user to run the server as") from None
        as_user = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    # Not under pytest's own temporary folder: that one is private to this user (0700).
    root = Path(tempfile.mkdtemp(prefix="search-postgres-"))
    root.chmod(0o755)
    (root / "pw").write_text(PASSWORD)
    if account:
        os.chown(root, account.pw_uid, account.pw_gid)
        os.chown(root / "pw", account.pw_uid, account.pw_gid)
    port = free_port()

    def step(*command, **kwargs):
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
        if done.returncode != 0:
            raise RuntimeError(f"{command[len(as_user)]}: {done.stdout[-1500:]} {done.stderr[-1500:]}")

    try:
        step(*as_user, bin_dir / "initdb", "-D", root / "data", "-U", "search", "--auth=scram-sha-256",
             f"--pwfile={root / 'pw'}", "-E", "UTF8")
        step(*as_user, bin_dir / "pg_ctl", "-D", root / "data", "-l", root / "log", "-w", "-o",
             f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
        step(bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "search", "studies",
             env={**os.environ, "PGPASSWORD": PASSWORD})
        yield (f"postgresql://search:{PASSWORD}@127.0.0.1:{port}/studies",
               f"postgresql://search@127.0.0.1:{port}/studies")
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", root / "data", "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
