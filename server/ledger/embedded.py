"""The embedded PostgreSQL: Debian's server binaries, a cluster in a data folder, served on a unix socket there.

PostgreSQL refuses to run as root. When we are root (a container, a fresh machine), the cluster
belongs to the `postgres` user that Debian's package creates and the server runs as that user;
the folders above the data folder get the search bit for it (never read or write).
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from server.children import stop_with_parent
from server.datadir import FOLDER_MODE, UMASK, private_opener

log = logging.getLogger("livecart.postgres")

DATABASE = "livecart"
USER = "livecart"
PORT = 5432  # only names the socket file: the server listens on no TCP port


def find_bindir(configured: str | None = None) -> Path:
    """POSTGRES_BIN, else Debian's newest /usr/lib/postgresql/<version>/bin, else the folder of `postgres` on PATH."""
    candidates = [configured] if configured else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda path: int(Path(path).parent.name or 0), reverse=True)
    found = shutil.which("postgres")
    if found:
        candidates.append(str(Path(found).parent))
    for candidate in candidates:
        if (Path(candidate) / "postgres").is_file() and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    raise SystemExit(
        "No PostgreSQL server found: run scripts/start (it installs Debian's postgresql), set POSTGRES_BIN "
        "to the folder of `postgres` and `initdb`, or set DATABASE_URL to a running server."
    )


class EmbeddedPostgres:
    """A real PostgreSQL server process owned by this process, its cluster in `data_dir`, on a unix socket there."""

    def __init__(self, data_dir: Path, *, bindir: str | None = None, max_connections: int = 300) -> None:
        self.data_dir = data_dir.resolve()
        self.bindir = find_bindir(bindir)
        self.max_connections = max_connections
        self.process: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None
        # Only the postgres user's own group: with root's group kept, the group bits (none) of our
        # root-owned folders would apply to it instead of the search bit we give to others.
        self._extra_groups: list[str] | None = [] if self._user else None

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@/{DATABASE}?host={self.data_dir}&port={PORT}"

    @property
    def socket_path(self) -> Path:
        return self.data_dir / f".s.PGSQL.{PORT}"

    def start(self, timeout: float = 30.0) -> str:
        """Make the cluster if there is none, start the server and wait until it takes connections; return its URL."""
        self._prepare()
        if self._accepting():
            raise SystemExit(
                f"A PostgreSQL server already runs on {self.data_dir}: another livecart uses this DATA_DIR"
            )
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        args = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={self.data_dir}",
            "-c",
            f"port={PORT}",
            "-c",
            f"max_connections={self.max_connections}",
            "-c",
            "unix_socket_permissions=0700",
            "-c",
            "logging_collector=off",
        ]
        log_file = open(self.data_dir.parent / "postgres.log", "ab", opener=private_opener)  # noqa: SIM115 (the child keeps it)
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                user=self._user,
                group=self._user,
                extra_groups=self._extra_groups,
                preexec_fn=lambda: stop_with_parent(signal.SIGINT),  # SIGINT: PostgreSQL's fast shutdown
                umask=UMASK,
            )
        finally:
            log_file.close()
        self._wait_ready(timeout)
        log.info("embedded postgresql %s at %s", self.bindir, self.data_dir)
        return self.url

    def _prepare(self) -> None:
        self.data_dir.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        self.data_dir.chmod(FOLDER_MODE)
        if self._user is None:
            return
        account = pwd.getpwnam(self._user)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            if path.stat().st_uid != account.pw_uid:
                os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
        for parent in self.data_dir.parents:  # the server must be able to reach its folder
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)

    def _initdb(self) -> None:
        done = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                USER,
                "--auth=trust",  # unix socket only, in a folder only the server's user may enter
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            capture_output=True,
            user=self._user,
            group=self._user,
            extra_groups=self._extra_groups,
            umask=UMASK,
        )
        if done.returncode != 0:
            raise SystemExit(f"initdb failed:\n{done.stderr.decode(errors='replace')}")
        conf = self.data_dir / "postgresql.conf"
        with open(conf, "a") as handle:
            handle.write("\n# livecart\nlisten_addresses = ''\n")
        subprocess.run(
            [str(self.bindir / "postgres"), "--single", "-D", str(self.data_dir), "postgres"],
            input=f"CREATE DATABASE {DATABASE};\n".encode(),
            capture_output=True,
            check=True,
            user=self._user,
            group=self._user,
            extra_groups=self._extra_groups,
        )

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"postgres exited with {self.process.returncode}; see {self.data_dir.parent / 'postgres.log'}"
                )
            if self._accepting() and self._pid_file() == self.process.pid:  # ours, not a server already there
                return
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"postgres did not take connections within {timeout:.0f}s")
            time.sleep(0.05)

    def _accepting(self) -> bool:
        """A server takes connections on this folder's socket."""
        ready = subprocess.run(
            [
                str(self.bindir / "pg_isready"),
                "-q",
                "-h",
                str(self.data_dir),
                "-p",
                str(PORT),
                "-U",
                USER,
                "-d",
                DATABASE,
            ],
            capture_output=True,
        )
        return ready.returncode == 0

    def _pid_file(self) -> int | None:
        """The pid of the server that holds this cluster's lock file (postmaster.pid), if any."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: clients cut, WAL flushed), then make sure it is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
