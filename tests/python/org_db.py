"""The databases pocketkey-org's tests run against: the embedded SQLite file, and a real
PostgreSQL server (Debian's `postgresql` package) started for the test session.

PostgreSQL runs from a fresh `initdb` in a temporary directory, on a loopback port and a
socket directory of its own, as the `postgres` user when the tests run as root (the server
refuses root). Each test gets a database of its own.
"""

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from pathlib import Path

PG_USER = "pk"


def _pg_bindir():
    if os.environ.get("PK_PG_BINDIR"):
        return Path(os.environ["PK_PG_BINDIR"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    if which:
        return Path(which).parent
    raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; scripts/test.sh does)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One postgres process for the session; `new_database()` per test.

    `tls=(certificate PEM, private key PEM)`: the server speaks TLS with that certificate and
    refuses TCP connections without it (pg_hba `hostnossl ... reject`)."""

    def __init__(self, tls=None):
        self.bindir = _pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="pk-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        subprocess.run(
            [*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_USER,
             "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, timeout=120)
        ssl = []
        if tls:
            for name, pem in (("server.crt", tls[0]), ("server.key", tls[1])):
                path = self.data / name
                path.write_bytes(pem)
                path.chmod(0o600)
                if os.geteuid() == 0:
                    shutil.chown(path, "postgres")
            (self.data / "pg_hba.conf").write_text(
                "local all all trust\n"
                "hostssl all all 127.0.0.1/32 trust\n"
                "hostnossl all all 127.0.0.1/32 reject\n")
            ssl = ["-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key"]
        self.proc = subprocess.Popen(
            [*self.as_user, str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.sock), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", *ssl],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # The server says when it takes connections: wait for that line, not a fixed time.
        for line in self.proc.stderr:
            if "ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"postgres exited ({self.proc.wait()}) before accepting connections")
        self.serial = 0

    def url(self, db):
        return f"postgres://{PG_USER}@127.0.0.1:{self.port}/{db}"

    def psql(self, db, sql, *, stdin=None):
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\x1f", "-R", "\x1e", "-P", "null=\x01",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", db, "-c", sql],
            capture_output=True, text=True, timeout=60, input=stdin)
        if proc.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed: {proc.stderr}")
        return proc.stdout

    def new_database(self):
        self.serial += 1
        name = f"org{self.serial}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return name

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)


class SqliteDb:
    """The state directory's `org.db`."""

    name = "sqlite"
    args = []

    def __init__(self, state):
        self.path = Path(state) / "org.db"

    def rows(self, sql):
        db = sqlite3.connect(self.path)
        try:
            rows = db.execute(sql).fetchall()
            db.commit()
        finally:
            db.close()
        return [tuple(None if v is None else str(v) for v in row) for row in rows]

    def hex(self, column):
        return f"lower(hex({column}))"

    def dump(self):
        db = sqlite3.connect(self.path)
        try:
            return "\n".join(db.iterdump())
        finally:
            db.close()


class PostgresDb:
    """A database of its own on the session's PostgreSQL server."""

    name = "postgres"

    def __init__(self, server):
        self.server = server
        self.db = server.new_database()
        self.url = server.url(self.db)
        self.args = ["--database", self.url]

    def rows(self, sql):
        # Fields and records are split on the ASCII separators: values may hold newlines (PEM).
        # NULL prints as \x01, so a row of one NULL is not taken for no rows.
        out = self.server.psql(self.db, sql).removesuffix("\n")
        if not out:
            return []
        return [tuple(None if v == "\x01" else v for v in record.split("\x1f")) for record in out.split("\x1e")]

    def hex(self, column):
        return f"encode({column}, 'hex')"

    def dump(self):
        return subprocess.run(
            [str(self.server.bindir / "pg_dump"), "--data-only", "-h", "127.0.0.1",
             "-p", str(self.server.port), "-U", PG_USER, self.db],
            check=True, capture_output=True, text=True, timeout=60).stdout
