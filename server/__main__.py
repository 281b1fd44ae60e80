"""`python -m server`: start Redis and PostgreSQL where none is configured, seed the demo shop, run uvicorn,
stop what it started on exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys

import uvicorn
from redis.exceptions import RedisError

from server import config, datadir, webserver
from server.ledger.embedded import EmbeddedPostgres
from server.store.embedded import EmbeddedRedis

# Nothing that imports prometheus_client may be imported above: it picks its multi-process mode
# once, when first imported, and PROMETHEUS_MULTIPROC_DIR is only set in main().

log = logging.getLogger("livecart")


def _seed_demo(settings: config.Settings, base: str) -> None:
    """Seed the demo shop; log its viewer link and a single-use studio login link (never a reusable token)."""
    from server import cli, seed

    async def run() -> tuple[bool, str]:
        async with cli.access(settings) as (catalog, accounts, sessions):
            created, host_id = await seed.seed_demo(catalog, accounts)
            return created, await sessions.login_link(host_id, settings.login_link_minutes)

    try:
        created, ticket = asyncio.run(run())
    except (RedisError, OSError) as problem:
        raise SystemExit(f"cannot reach the stores to seed the demo shop: {problem}") from None
    if created:
        log.info("seeded the demo shop (merchant %r, room %r)", seed.DEMO_MERCHANT, seed.DEMO_ROOM)
    log.info("viewer room:  %s/room.html?room=%s", base, seed.DEMO_ROOM)
    minutes = settings.login_link_minutes
    log.info(
        "host studio:  %s (works once, for %d minutes)", cli.login_url(settings, ticket, base, seed.DEMO_ROOM), minutes
    )
    log.info("  another link: python -m server.cli login-link --email %s", seed.DEMO_HOST.value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--host", help="address to listen on (HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (WEB_CONCURRENCY, default 1)")
    args = parser.parse_args(argv)
    os.umask(datadir.UMASK)  # what this process and its children (workers, Redis, PostgreSQL) create is private
    settings = config.load()
    datadir.make_private(settings.data_dir)  # and what an older install left there
    level = logging.DEBUG if settings.log_level == "trace" else settings.log_level.upper()  # trace is uvicorn's own
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if not 1 <= port <= 65535 or workers < 1:
        parser.error(f"the port must be 1 to 65535 and workers at least 1, got port {port}, workers {workers}")

    # uvicorn re-raises the signal that stopped it; make SIGTERM unwind this function so the stores are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    redis: EmbeddedRedis | None = None
    postgres: EmbeddedPostgres | None = None
    try:
        if settings.redis_url is None and not settings.redis_sentinels:
            # With DURABLE_ACK every batch waits for a WAITAOF, answered on Redis's timer tick: tick 10x as often.
            hz = 100 if settings.durable_ack else 10
            redis = EmbeddedRedis(settings.redis_dir, fsync=settings.redis_fsync, binary=settings.redis_server, hz=hz)
            os.environ["REDIS_URL"] = redis.start()
        if settings.database_url is None:
            postgres = EmbeddedPostgres(settings.postgres_dir, bindir=settings.postgres_bin)
            os.environ["DATABASE_URL"] = postgres.start()
        metrics_dir = settings.data_dir / f"metrics-{port}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=datadir.FOLDER_MODE, parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        if settings.seed_demo:
            base = settings.public_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
            _seed_demo(config.load(), base)
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            ws_max_size=settings.max_frame_bytes,
            ws_per_message_deflate=False,
            log_level=settings.log_level,
            timeout_graceful_shutdown=settings.shutdown_seconds,
            access_log=False,
            log_config=webserver.log_config(),
            proxy_headers=True,
            http=webserver.PROTOCOL,
            ws=webserver.WS_PROTOCOL,
            headers=webserver.EVERY_ANSWER,
        )
    finally:
        for embedded in (postgres, redis):
            if embedded is not None:
                embedded.stop()


if __name__ == "__main__":
    main()
