"""A private PostgreSQL server for tests and `rsft serve --scale`: initdb, start, create a database, stop.

It uses the server binaries of the machine (Debian: /usr/lib/postgresql/<version>/bin). `initdb` and `postgres`
refuse to run as root, so under root they run as an unprivileged user (`postgres`, else `nobody`) that owns the
data directory. The server listens on 127.0.0.1 (a free port unless given) and on a unix socket in its own
directory, with password (SCRAM) authentication over TCP. Nothing here talks SQL: the client programs
(`createdb`, `pg_isready`) do, so only the log package imports a database driver.

Example:
    with PostgresServer.start() as server:        # a throwaway server in a temporary directory
        url = server.create_database("rsft")      # postgresql://rsft:...@127.0.0.1:PORT/rsft

`rsft serve --scale` has its server run by supervisord instead (`PostgresServer.supervised`), so it is restarted
when it dies like every other server of the stack: supervisord runs `python -m rsft_plugin.pgserver DIR PORT`,
which drops root, clears the environment (supervisord's holds the stack's secrets) and becomes the postmaster.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RsftError
from .ports import free_port

SERVER_ROOT = Path("/usr/lib/postgresql")
UNPRIVILEGED_USERS = ("postgres", "nobody")
# Fast settings for a throwaway server; durable installs pass `durable=True`.
_THROWAWAY = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(RsftError):
    """No PostgreSQL binaries on this machine, or the server did not start."""


def pg_binary(name: str) -> Path:
    """The newest installed PostgreSQL program `name` (server programs are not on PATH on Debian).

    Raises:
        PostgresUnavailable: it is installed nowhere.
    """
    versions = sorted((p for p in SERVER_ROOT.glob("*/bin") if (p / name).exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if versions:
        return versions[-1] / name
    found = shutil.which(name)
    if found:
        return Path(found)
    raise PostgresUnavailable(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")


@dataclass
class PostgresServer:
    """A running server this process started; `stop()` ends it (and removes a temporary directory)."""

    directory: Path
    port: int
    user: str
    password: str
    process: subprocess.Popen | None  # None: supervisord runs it (`supervised`)
    run_as: str | None = None
    temporary: bool = False
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.directory / "server.log"

    @classmethod
    def start(cls, directory: Path | None = None, port: int | None = None, user: str = "rsft",
              password: str | None = None, durable: bool = False, timeout: float = 60.0) -> PostgresServer:
        """Initialise `directory` (when it holds no cluster yet) and start a server on it.

        Args:
            directory: where the cluster lives (data/ inside it); None: a new temporary directory, removed on stop.
            port: TCP port on 127.0.0.1; None: a free one.
            user, password: the superuser the URLs name; the password is generated when None (and must be given
                again to reuse an existing directory).
            durable: keep fsync and full-page writes on (off for throwaway test servers).

        Raises:
            PostgresUnavailable: no binaries, or the server did not come up within `timeout` seconds.
        """
        run_as = _unprivileged_user() if os.geteuid() == 0 else None
        temporary = directory is None
        directory = Path(tempfile.mkdtemp(prefix="rsft-pg-")) if directory is None else Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        password = password or secrets.token_urlsafe(16)
        port = port or free_port()
        _give_to(directory, run_as)
        try:
            if not (directory / "data" / "PG_VERSION").exists():
                _initdb(directory, user, password, run_as)
            server = cls(directory, port, user, password, _spawn_server(directory, port, durable, run_as),
                         run_as, temporary)
        except BaseException:
            if temporary:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        try:
            server.wait_until_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    @classmethod
    def supervised(cls, directory: Path, port: int, password: str, user: str = "rsft") -> PostgresServer:
        """A server in `directory` (initialised here when it holds no cluster yet) that someone else runs: start
        `command` (under supervisord), then `wait_until_ready`. `stop()` leaves it to whoever runs it.

        Raises:
            PostgresUnavailable: no binaries, or initdb failed.
        """
        run_as = _unprivileged_user() if os.geteuid() == 0 else None
        directory.mkdir(parents=True, exist_ok=True)
        _give_to(directory, run_as)
        if not (directory / "data" / "PG_VERSION").exists():
            _initdb(directory, user, password, run_as)
        return cls(directory, port, user, password, None, run_as)

    @property
    def command(self) -> list[str]:
        """The command that runs this server durably in the foreground (see `serve`), for a supervisor."""
        return [sys.executable, "-m", "rsft_plugin.pgserver", str(self.directory), str(self.port)]

    def url(self, database: str = "postgres") -> str:
        """A libpq URL (with the password) for `database` on this server."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str = "template0") -> str:
        """CREATE DATABASE `name` as a copy of `template` (an empty one by default); returns its URL.

        Raises:
            PostgresUnavailable: createdb failed (it exists already, or the template is in use); the message says why.
        """
        self._client("createdb", f"--template={template}", "--encoding=UTF8", name)
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: running transactions roll back, then a checkpoint), or for a temporary directory
        an immediate one (SIGQUIT: no checkpoint, the files go anyway); kill after 30 s. Idempotent."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT if self.temporary else signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.temporary:
            _remove_in_background(self.directory)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _client(self, program: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PGPASSWORD": self.password}
        done = subprocess.run([str(pg_binary(program)), "--host=127.0.0.1", f"--port={self.port}",
                               f"--username={self.user}", *args], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{program} {' '.join(args)}: {done.stderr.strip()}")
        return done

    def wait_until_ready(self, timeout: float) -> None:
        """Return once the server accepts connections (pg_isready).

        Raises:
            PostgresUnavailable: it did not within `timeout` seconds, or the process this object started exited.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PostgresUnavailable(f"postgres exited ({self.process.returncode}): {self._log_tail()}")
            ready = subprocess.run([str(pg_binary("pg_isready")), "--host=127.0.0.1", f"--port={self.port}",
                                    "--dbname=postgres", "--timeout=2"], capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise PostgresUnavailable(f"postgres did not accept connections within {timeout:g} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no server log)"


def _remove_in_background(directory: Path) -> None:
    """Delete a stopped server's temporary directory without waiting: a cluster with a database per test holds
    tens of thousands of small files, and unlinking them took most of a minute on a busy disk."""
    if not directory.exists():
        return
    doomed = directory.with_name(directory.name + ".deleting")
    directory.rename(doomed)  # the name is free at once, whatever the deletion takes
    subprocess.Popen(["rm", "-rf", "--", str(doomed)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def _unprivileged_user() -> str:
    for name in UNPRIVILEGED_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable(f"running as root, and none of the users {UNPRIVILEGED_USERS} exists to run "
                              "PostgreSQL (it refuses root); create one, e.g. `useradd --system postgres`")


def _give_to(path: Path, run_as: str | None) -> None:
    """Let the unprivileged server user own a file or folder we made as root (nothing to do otherwise)."""
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _as_user(run_as: str | None) -> dict:
    """subprocess arguments that drop root for PostgreSQL's programs (nothing when we are not root)."""
    if not run_as:
        return {}
    entry = pwd.getpwnam(run_as)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}


def _initdb(directory: Path, user: str, password: str, run_as: str | None) -> None:
    password_file = directory / "initdb-password"
    password_file.write_text(password)
    try:
        _give_to(password_file, run_as)
        done = subprocess.run(
            [str(pg_binary("initdb")), f"--pgdata={directory / 'data'}", f"--username={user}",
             f"--pwfile={password_file}", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
             "--encoding=UTF8", "--locale=C.UTF-8"],
            capture_output=True, text=True, **_as_user(run_as))
    finally:
        password_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise PostgresUnavailable(f"initdb failed: {done.stderr.strip()[-2000:]}")


def _server_arguments(directory: Path, port: int, durable: bool) -> list[str]:
    settings = {"listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": str(directory),
                **({} if durable else _THROWAWAY)}
    return ["-D", str(directory / "data"),
            *(arg for key, value in settings.items() for arg in ("-c", f"{key}={value}"))]


def _spawn_server(directory: Path, port: int, durable: bool, run_as: str | None) -> subprocess.Popen:
    args = _server_arguments(directory, port, durable)
    log = open(directory / "server.log", "ab")  # noqa: SIM115 - the server writes it for its whole life
    _give_to(directory / "server.log", run_as)
    try:
        return subprocess.Popen([str(pg_binary("postgres")), *args],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **_as_user(run_as))
    finally:
        log.close()


def serve(directory: Path, port: int) -> None:
    """Become the durable postmaster of `directory` (never returns): as root, switch to the unprivileged user first;
    start from an empty environment, so the server's processes hold none of the stack's secrets.

    After a kill -9 the old server's processes leave within milliseconds, but a new postmaster that starts while
    one is still attached to the old shared memory refuses to run ("pre-existing shared memory block is still in
    use"), and supervisord would count that as a failed start: so wait for them first (at most 30 s).
    """
    _wait_for_old_server(directory / "data", 30.0)
    environment = {key: value for key, value in os.environ.items() if key in ("PATH", "LANG", "LC_ALL", "TZ")}
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        os.chdir("/")
    program = str(pg_binary("postgres"))
    os.execve(program, [program, *_server_arguments(directory, port, durable=True)], environment)


def _wait_for_old_server(data: Path, timeout: float) -> None:
    """Wait while processes of the last postmaster (its lock file names its segment) still use its shared memory
    (a live server too: then postgres itself refuses to start, as it should)."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        shared_memory_id = lines[6].split()[1]
    except (OSError, IndexError):
        return  # no lock file (a clean stop), or one without a shared memory segment
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _attached(shared_memory_id) > 0:
        time.sleep(0.1)


def _attached(shared_memory_id: str) -> int:
    """How many processes are attached to System V shared memory segment `shared_memory_id` (0: gone)."""
    try:
        rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return 0
    for row in rows:
        fields = row.split()
        if len(fields) > 6 and fields[1] == shared_memory_id:
            return int(fields[6])
    return 0


if __name__ == "__main__":  # python -m rsft_plugin.pgserver DIRECTORY PORT, as supervisord runs it
    serve(Path(sys.argv[1]), int(sys.argv[2]))
