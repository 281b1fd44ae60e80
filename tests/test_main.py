"""How livecart starts: `python -m server` with and without REDIS_URL and DATABASE_URL, workers, the Procfile, the CLI,
bad settings."""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from loadtests.support import procstat
from server.ledger.migrate import migrations
from server.protocol import Role
from tests.conftest import ROOT, SECRET_KEY, ServerProcess, free_port, mint, start_server
from tests.timing import seconds

EMBEDDED = {"REDIS_URL": "", "DATABASE_URL": ""}  # a fresh install: the server runs both stores itself


# --- processes ----------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of a process, from /proc/<pid>/task/*/children."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(FileNotFoundError):  # the thread ended meanwhile
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def postmaster(server: ServerProcess) -> list[int]:
    """The PostgreSQL server processes the launcher started itself (the others are forked by them)."""
    return [pid for pid in server.tree().postgres if pid in children(server.process.pid)]


def sql(url: str, *queries: str) -> list[object]:
    """Each query's first value, on one connection to the PostgreSQL at `url`."""

    async def run() -> list[object]:
        connection = await asyncpg.connect(url)
        try:
            return [await connection.fetchval(query) for query in queries]
        finally:
            await connection.close()

    return asyncio.run(run())


def gone(pid: int) -> bool:
    """The process has exited (no /proc entry, or only a zombie waiting for its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Return once `check()` is true; fail after `timeout` nominal seconds (scaled, tests/timing.py)."""
    deadline = time.monotonic() + seconds(timeout)
    while not check():
        assert time.monotonic() < deadline, f"{what} not met within {seconds(timeout):g}s"
        time.sleep(0.05)


@contextmanager
def launched(tmp: Path, env: dict[str, str], workers: int = 1) -> Iterator[ServerProcess]:
    """A `python -m server` process, stopped (SIGTERM) when the block ends, whatever happens in it."""
    started = start_server(tmp, env, workers=workers)
    try:
        yield started
    finally:
        started.stop()


def cli(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m server.cli …` with the tests' SECRET_KEY and this test's DATA_DIR."""
    full_env = {**os.environ, "SECRET_KEY": SECRET_KEY, "DATA_DIR": str(tmp / "data"), "REDIS_URL": "", **env}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- (a) no REDIS_URL: the embedded Redis --------------------------------------------


def test_without_redis_url_it_runs_its_own_redis_with_aof_and_stops_it(tmp_path: Path, database_url: str) -> None:
    """With no REDIS_URL the launcher runs one Redis child (AOF on, data in DATA_DIR/redis) and stops it on SIGTERM."""
    data_dir = (tmp_path / "data").resolve()
    with launched(tmp_path, {"REDIS_URL": "", "DATABASE_URL": database_url}) as server:
        redis_pids = server.tree().redis
        assert len(redis_pids) == 1
        redis_pid = redis_pids[0]
        assert redis_pid in children(server.process.pid)
        socket = data_dir / "redis" / "redis.sock"
        client = redis.Redis(unix_socket_path=str(socket), decode_responses=True)
        try:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("dir") == {"dir": str(data_dir / "redis")}
        finally:
            client.close()
        assert any((data_dir / "redis").glob("appendonlydir/*.aof"))
    assert server.process.returncode == 0
    # The launcher waits for its Redis: by the time the launcher has exited, Redis has flushed its AOF and gone.
    assert gone(redis_pid)
    assert not socket.exists()


@pytest.mark.parametrize(("durable", "hz"), [("0", "10"), ("1", "100")])
def test_the_embedded_redis_ticks_faster_for_durable_acknowledgement(
    tmp_path: Path, database_url: str, durable: str, hz: str
) -> None:
    """With DURABLE_ACK=1 the embedded Redis runs with hz 100 (a WAITAOF is answered on its timer's tick), else 10."""
    with launched(tmp_path, {"REDIS_URL": "", "DATABASE_URL": database_url, "DURABLE_ACK": durable}):
        client = redis.Redis(unix_socket_path=str(tmp_path / "data" / "redis" / "redis.sock"), decode_responses=True)
        try:
            assert client.config_get("hz") == {"hz": hz}
        finally:
            client.close()


def studio_ticket(server: ServerProcess) -> str:
    """The single-use login link's ticket the start-up log prints."""
    found = re.search(
        re.escape(f"host studio:  {server.base_url}/studio.html?room=demo#login=") + r"(\S+)", server.log()
    )
    assert found is not None, server.log()
    return found[1]


def redeem(server: ServerProcess, ticket: str) -> httpx.Response:
    return httpx.post(f"{server.base_url}/api/sign-in/link", json={"ticket": ticket})


def test_without_redis_url_the_demo_shop_is_seeded_and_linked_in_the_log(tmp_path: Path) -> None:
    """A fresh install has the demo room; the log prints the viewer link and a single-use studio login link (no
    reusable token) that signs the demo host in once."""
    with launched(tmp_path, EMBEDDED) as server:
        room = httpx.get(f"{server.base_url}/api/rooms/demo")
        assert room.status_code == 200
        assert room.json()["merchant_id"] == "demo"
        log = server.log()
        assert "seeded the demo shop" in log
        assert f"viewer room:  {server.base_url}/room.html?room=demo" in log
        assert "#token=" not in log
        signed = redeem(server, studio_ticket(server))
        assert signed.status_code == 200
        assert signed.json()["user"]["roles"] == {"demo": "host"} and signed.json()["user"]["name"] == "Demo Host"
        assert signed.json()["token"] not in server.log()
        assert redeem(server, studio_ticket(server)).status_code == 401


def test_data_survives_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    """A product (Redis AOF) and a table row (the PostgreSQL cluster) outlive SIGTERM and a restart; the cluster is
    reused, not made or migrated again, and the demo is not seeded again."""
    admin = mint("demo", Role.ADMIN)
    product = {"id": "survivor", "title": "Survivor mug", "price": 777, "currency": "EUR"}
    cluster = "SELECT system_identifier FROM pg_control_system()"
    applied = "SELECT array_agg((version, applied_at)::text ORDER BY version) FROM schema_migrations"
    with launched(tmp_path, EMBEDDED) as first:
        created = httpx.post(f"{first.base_url}/api/merchants/demo/products", headers=auth(admin), json=product)
        assert created.status_code == 201
        sql(first.database_url, "CREATE TABLE survivor (note text)", "INSERT INTO survivor VALUES ('kept')")
        before = sql(first.database_url, cluster, applied)
    assert first.process.returncode == 0
    with launched(tmp_path, EMBEDDED) as second:
        assert second.port != first.port
        kept = httpx.get(f"{second.base_url}/api/merchants/demo/products/survivor", headers=auth(admin))
        assert kept.status_code == 200
        assert kept.json() == {**product, "merchant_id": "demo", "image_url": ""}
        assert "seeded the demo shop" not in second.log()
        assert httpx.get(f"{second.base_url}/api/rooms/demo").status_code == 200
        assert sql(second.database_url, "SELECT note FROM survivor") == ["kept"]
        assert sql(second.database_url, cluster, applied) == before


def test_without_secret_key_one_is_generated_in_data_dir_and_shared(tmp_path: Path) -> None:
    """With no SECRET_KEY the server keeps a generated key in DATA_DIR: its tokens work and outlive a restart; one
    signed with another key does not."""
    no_key = {**EMBEDDED, "SECRET_KEY": ""}
    with launched(tmp_path, no_key) as first:
        key_file = tmp_path / "data" / "secret_key"
        assert len(key_file.read_text().strip()) >= 32
        token = redeem(first, studio_ticket(first)).json()["token"]
        assert httpx.get(f"{first.base_url}/api/me", headers=auth(token)).json()["roles"] == {"demo": "host"}
        foreign = mint("demo", Role.HOST)  # the tests' SECRET_KEY: not this server's
        assert httpx.get(f"{first.base_url}/api/me", headers=auth(foreign)).status_code == 401
    key = key_file.read_text()
    with launched(tmp_path, no_key) as second:
        assert key_file.read_text() == key
        assert httpx.get(f"{second.base_url}/api/me", headers=auth(token)).json()["roles"] == {"demo": "host"}


def test_killed_launcher_takes_its_redis_and_postgres_with_it(tmp_path: Path) -> None:
    """Even on SIGKILL (no clean-up code runs) the embedded Redis and PostgreSQL exit: no orphan keeps the data dir."""
    with launched(tmp_path, EMBEDDED) as server:
        tree = server.tree()
        (redis_pid,) = tree.redis
        assert len(postmaster(server)) == 1
        server.stop(signal.SIGKILL)
        assert server.process.returncode == -signal.SIGKILL
        wait_for(lambda: gone(redis_pid), what="orphaned Redis exit")
        wait_for(lambda: all(gone(pid) for pid in tree.postgres), what="orphaned PostgreSQL exit")
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()  # a clean shutdown, not a crash


def test_second_launcher_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    """A second launcher on a DATA_DIR whose Redis runs exits with a message; the first keeps serving."""
    with launched(tmp_path, EMBEDDED) as first:
        env = {**os.environ, "SECRET_KEY": SECRET_KEY, "DATA_DIR": str(tmp_path / "data"), **EMBEDDED}
        env["PORT"] = str(free_port())
        second = subprocess.run(
            [sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        assert second.returncode != 0
        assert "another livecart uses DATA_DIR" in second.stderr
        assert "Traceback" not in second.stderr
        assert httpx.get(f"{first.base_url}/readyz").json() == {"ready": True}
        assert len(first.tree().redis) == 1
        assert len(postmaster(first)) == 1


# --- (b) no DATABASE_URL: the embedded PostgreSQL ----------------------------------


def test_without_database_url_it_runs_its_own_postgres_and_stops_it(tmp_path: Path, redis_url: str) -> None:
    """With no DATABASE_URL the launcher runs one PostgreSQL server child (its cluster in DATA_DIR/postgres, a unix
    socket there, no TCP port, the schema migrated) and stops it on SIGTERM: no postgres process is left."""
    cluster = (tmp_path / "data" / "postgres").resolve()
    with launched(tmp_path, {"REDIS_URL": redis_url, "DATABASE_URL": ""}) as server:
        (main,) = postmaster(server)
        postgres = server.tree().postgres
        assert set(postgres) <= set(procstat.children(main))  # the others are its own background processes
        assert (cluster / ".s.PGSQL.5432").is_socket()
        data_directory, listen, migrated = sql(
            server.database_url,
            "SHOW data_directory",
            "SHOW listen_addresses",
            "SELECT count(*) FROM schema_migrations",
        )
        assert (data_directory, listen, migrated) == (str(cluster), "", len(migrations()))
        assert "embedded postgresql" in server.log()
        assert httpx.get(f"{server.base_url}/readyz").json() == {"ready": True}
    assert server.process.returncode == 0
    assert all(gone(pid) for pid in postgres)  # the launcher waited for it
    assert not (cluster / ".s.PGSQL.5432").exists()
    assert not (cluster / "postmaster.pid").exists()  # a clean shutdown
    assert (cluster / "PG_VERSION").exists()


def test_unreachable_database_url_exits_with_a_clear_message(tmp_path: Path, redis_url: str, database_url: str) -> None:
    """A DATABASE_URL with no server behind it (a missing socket, a closed port, a missing database) stops the server,
    non-zero, with one line naming DATABASE_URL and why (no driver traceback); it starts no PostgreSQL of its own."""
    cases = [
        f"postgresql://livecart@/livecart?host={tmp_path / 'nowhere'}&port=5432",
        f"postgresql://livecart:secret@127.0.0.1:{free_port()}/livecart",
        database_url.replace("/livecart?", "/no_such_database?"),
    ]
    for url in cases:
        env = {**os.environ, "SECRET_KEY": SECRET_KEY, "DATA_DIR": str(tmp_path / "data"), "PORT": str(free_port())}
        env.update(REDIS_URL=redis_url, DATABASE_URL=url, SEED_DEMO="0")
        result = subprocess.run(
            [sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds(60)
        )
        assert result.returncode != 0, result.stderr
        assert "cannot reach PostgreSQL at DATABASE_URL" in result.stderr, result.stderr
        assert "asyncpg" not in result.stderr, result.stderr  # not the driver's traceback
        assert "secret" not in result.stderr  # a password in the URL is not printed
        assert not (tmp_path / "data" / "postgres").exists()


# --- (c) both URLs: no store of its own ---------------------------------------------


def test_with_both_urls_it_starts_no_store_of_its_own(tmp_path: Path, stores: dict[str, str]) -> None:
    """With REDIS_URL and DATABASE_URL set the launcher only runs uvicorn: no Redis or PostgreSQL process below it,
    no DATA_DIR/redis or DATA_DIR/postgres."""
    with launched(tmp_path, stores) as server:
        tree = server.tree()
        assert (tree.redis, tree.postgres) == ([], [])
        assert tree.web == [server.process.pid]  # one worker: uvicorn runs in the launcher itself
        assert not (tmp_path / "data" / "redis").exists()
        assert not (tmp_path / "data" / "postgres").exists()
        assert httpx.get(f"{server.base_url}/readyz").json() == {"ready": True}
        assert "embedded redis" not in server.log()
        assert "embedded postgresql" not in server.log()
    assert server.process.returncode == 0


# --- (d) several workers ------------------------------------------------------------


def tcp_owner(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which of these processes holds the server end of the TCP connection from client_port."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if local_port == server_port and remote_port == client_port:
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                pass
    return None


def request(connection: http.client.HTTPConnection, method: str, path: str, body: str | None = None, **headers: str):
    connection.request(method, path, body=body, headers={"Content-Type": "application/json", **headers})
    response = connection.getresponse()
    return response.status, response.read()


def test_two_workers_share_one_redis_and_one_postgres(tmp_path: Path) -> None:
    """WEB_CONCURRENCY=2 runs two uvicorn workers on one embedded Redis and one embedded PostgreSQL: both start (each
    migrates under the lock, the schema is applied once), and what one writes, the other reads."""
    with launched(tmp_path, EMBEDDED, workers=2) as server:
        wait_for(lambda: server.log().count("Application startup complete.") == 2, what="both workers up")
        pid = server.process.pid
        workers = [child for child in children(pid) if "multiprocessing.spawn" in procstat.command(child)]
        assert len(workers) == 2
        tree = server.tree()
        assert len(tree.redis) == 1 and tree.redis[0] in children(pid)
        assert len(postmaster(server)) == 1
        assert not set(tree.redis + tree.postgres) & {child for w in workers for child in procstat.children(w)}
        for worker in workers:
            assert f"Started server process [{worker}]" in server.log()
        versions = "SELECT array_agg(version ORDER BY version) FROM schema_migrations"
        assert sql(server.database_url, versions) == [[version for version, _, _ in migrations()]]

        admin = mint("demo", Role.ADMIN)
        connections: dict[int, http.client.HTTPConnection] = {}
        opened: list[http.client.HTTPConnection] = []
        try:
            deadline = time.monotonic() + seconds(15)
            while len(connections) < 2:
                assert time.monotonic() < deadline, "every connection went to the same worker"
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                opened.append(connection)
                status, body = request(connection, "GET", "/readyz")
                assert (status, body) == (200, b'{"ready":true}')
                owner = tcp_owner(server.port, connection.sock.getsockname()[1], workers)
                assert owner in workers
                connections.setdefault(owner, connection)
            writer, reader = (connections[worker] for worker in workers)
            status, _ = request(
                writer,
                "POST",
                "/api/merchants/demo/products",
                '{"id": "shared", "title": "Seen by both", "price": 100}',
                Authorization=f"Bearer {admin}",
            )
            assert status == 201
            status, body = request(
                reader, "GET", "/api/merchants/demo/products/shared", Authorization=f"Bearer {admin}"
            )
            assert status == 200
            assert b"Seen by both" in body
        finally:
            for connection in opened:
                connection.close()
    assert server.process.returncode == 0
    wait_for(lambda: all(gone(worker) for worker in workers), what="workers exit")


# --- (e) the Procfile ---------------------------------------------------------------


def procfile_web_command() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise AssertionError("the Procfile has no web: process")


@pytest.mark.parametrize("with_urls", [False, True], ids=["embedded-stores", "store-urls"])
def test_procfile_web_process_serves_on_port(tmp_path: Path, stores: dict[str, str], with_urls: bool) -> None:
    """The Procfile's web: command, run as a platform does (bash -c, $PORT, venv first on PATH), serves /healthz,
    with its own Redis and PostgreSQL or with REDIS_URL and DATABASE_URL; SIGTERM to its group stops all of it."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATA_DIR": str(tmp_path / "data"),
        "SECRET_KEY": SECRET_KEY,
        **(stores if with_urls else EMBEDDED),
    }
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", procfile_web_command()],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(port, process, log_path)
    try:

        def healthy() -> bool:
            assert process.poll() is None, server.log()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).text == "ok"
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=30, what="/healthz on $PORT")
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json() == {"ready": True}
        tree = server.tree()
        assert len(tree.redis) == len(postmaster(server)) == (0 if with_urls else 1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # platforms signal the whole process group
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, server.log()
    wait_for(lambda: all(gone(pid) for pid in tree.redis + tree.postgres), what="Redis and PostgreSQL exit")


# --- (f) the operator CLI -----------------------------------------------------------


def test_cli_creates_a_merchant_its_staff_and_login_links_and_signs_people_out(
    tmp_path: Path, server: ServerProcess, stores: dict[str, str]
) -> None:
    """create-merchant (with its first admin) and add-staff make accounts with roles; login-link prints a single-use
    studio link that signs that person in; revoke signs them out everywhere at once."""
    merchant = f"acme-{secrets.token_hex(3)}"
    admin_email, host_email = f"ada-{merchant}@acme.example", f"hal-{merchant}@acme.example"
    created = cli(tmp_path, "create-merchant", merchant, "--name", "Acme", "--email", admin_email, **stores)
    assert created.returncode == 0, created.stderr
    assert f"merchant {merchant} created" in created.stderr and "admin u_" in created.stdout
    added = cli(tmp_path, "add-staff", merchant, "--email", host_email, "--role", "host", "--name", "Hal", **stores)
    assert added.returncode == 0, added.stderr

    link = cli(tmp_path, "login-link", "--email", host_email, "--minutes", "5", **stores)
    assert link.returncode == 0, link.stderr
    ticket = link.stdout.strip().split("#login=")[1]
    signed = redeem(server, ticket)
    assert signed.status_code == 200
    user = signed.json()["user"]
    assert user["roles"] == {merchant: "host"} and user["name"] == "Hal"
    token = signed.json()["token"]
    shown = httpx.get(f"{server.base_url}/api/merchants/{merchant}", headers=auth(token))
    assert shown.status_code == 200 and shown.json()["name"] == "Acme"
    assert redeem(server, ticket).status_code == 401

    revoked = cli(tmp_path, "revoke", "--email", host_email, **stores)
    assert revoked.returncode == 0 and "signed out 1 session" in revoked.stdout
    assert httpx.get(f"{server.base_url}/api/me", headers=auth(token)).status_code == 401


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create-merchant", "Not Valid", "--name", "X"], "merchant id must be"),
        (["add-staff", "no-such-merchant", "--email", "a@b.example"], "no merchant 'no-such-merchant'"),
        (["add-staff", "acme", "--email", "a@b.example", "--role", "viewer"], "invalid choice: 'viewer'"),
        (["login-link", "--email", "a@b.example", "--minutes", "-1"], "--minutes must be 1 to 60"),
        (["login-link", "--email", "a@b.example", "--minutes", "100000"], "--minutes must be 1 to 60"),
        (["login-link", "--email", "nobody@nowhere.example"], "nobody has that email"),
        (["login-link"], "one of the arguments --email --phone is required"),
        (["revoke"], "say who"),
        (["mint-token", "--merchant", "acme"], "invalid choice: 'mint-token'"),
    ],
)
def test_cli_refuses_bad_input_with_a_message(
    tmp_path: Path, stores: dict[str, str], args: list[str], message: str
) -> None:
    """A bad id, a merchant that does not exist, a viewer role, a login link of a negative or absurd lifetime or for
    nobody, and the old mint-token each exit non-zero saying why, no traceback."""
    result = cli(tmp_path, *args, **stores)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [({}, "set REDIS_URL and DATABASE_URL"), ({"REDIS_URL": "unix:///nonexistent.sock"}, "cannot reach Redis")],
)
def test_cli_without_its_stores_says_so(
    tmp_path: Path, stores: dict[str, str], env: dict[str, str], message: str
) -> None:
    """A missing URL or an unreachable Redis exits non-zero saying which, no traceback."""
    result = cli(tmp_path, "create-merchant", "acme", "--name", "X", **({**stores, **env} if env else {}))
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


# --- (g) bad settings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        ({"PORT": "abc"}, [], "PORT must be a whole number, got 'abc'"),
        ({"PORT": "70000"}, [], "PORT must be 1 to 65535, got 70000"),
        ({"PORT": "-1"}, [], "PORT must be 1 to 65535, got -1"),
        ({"WEB_CONCURRENCY": "two"}, [], "WEB_CONCURRENCY must be a whole number, got 'two'"),
        ({"WEB_CONCURRENCY": "0"}, [], "WEB_CONCURRENCY must be at least 1, got 0"),
        ({"TICK_MS": "0"}, [], "TICK_MS must be at least 1, got 0"),
        ({"DATABASE_POOL_SIZE": "1"}, [], "DATABASE_POOL_SIZE must be 2 to 1000, got 1"),
        ({"REDIS_APPENDFSYNC": "sometimes"}, [], "REDIS_APPENDFSYNC must be always, everysec or no"),
        ({"LOG_LEVEL": "loud"}, [], "LOG_LEVEL must be one of critical, error, warning, info, debug, trace"),
        ({"REDIS_URL": "unix:///nonexistent.sock"}, [], "cannot reach Redis at REDIS_URL"),
        ({}, ["--port", "70000"], "the port must be 1 to 65535"),
    ],
)
def test_bad_setting_exits_with_a_readable_message(
    tmp_path: Path, env: dict[str, str], argv: list[str], message: str
) -> None:
    """A bad environment value (or flag) stops the launcher at once, non-zero, with one line saying what is wrong."""
    full_env = {
        **os.environ,
        "SECRET_KEY": SECRET_KEY,
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_port()),
        **EMBEDDED,
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-m", "server", *argv], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "redis").exists()  # refused before starting anything
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()  # no PostgreSQL left running


def test_log_level_is_case_insensitive_and_accepts_trace(tmp_path: Path, stores: dict[str, str]) -> None:
    """LOG_LEVEL=WARNING and LOG_LEVEL=trace (uvicorn's own level) both start the server."""
    for level in ("WARNING", "trace"):
        with launched(tmp_path, {**stores, "LOG_LEVEL": level}) as server:
            assert httpx.get(f"{server.base_url}/healthz").status_code == 200
        assert server.process.returncode == 0
