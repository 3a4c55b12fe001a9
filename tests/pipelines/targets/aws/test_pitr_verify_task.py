"""The program the point-in-time drill's one-off task runs on AWS
(`python -m pipelines.targets.aws.backup_task pitr-verify`), against real PostgreSQL: a
database at the migration head plays the copy restored to T, the order ledger is served
and the verdict received over real HTTP, as presigned S3 URLs would be."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import pytest

from pipelines.backups.pitr_orders import Acked, OrderLedger
from pipelines.host.ports import free_port
from pipelines.postgres.tools import ConnInfo
from pipelines.targets.aws import backup_task

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T = 1_796_300_000.0  # 2026-12-03, a whole second as RDS restores to
STOCK = 10_000_000


@pytest.fixture
def bucket() -> Iterator[tuple[str, dict[str, bytes]]]:
    """Presigned URLs' stand-in: GET /ledger serves what the test puts there, PUTs are kept."""
    objects: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = objects.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def do_PUT(self) -> None:
            objects[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", objects
    finally:
        server.shutdown()
        server.server_close()


async def copy_as_of_t(
    url: str, orders: list[tuple[int, int, float]], stock: int
) -> tuple[int, int]:
    """The shopper, the item and `orders` (quantity, unit price, commit offset from T in s)
    as the copy holds them; returns the shopper's and the item's ids."""
    conn = await asyncpg.connect(url)
    try:
        user = await conn.fetchval(
            "INSERT INTO users (email, password_hash) VALUES ('s@example.com', 'x') RETURNING id"
        )
        item = await conn.fetchval(
            "INSERT INTO items (sku, name, price_cents, stock) VALUES ('SYNTH', 'i', 7, $1) "
            "RETURNING id",
            stock,
        )
        for quantity, price, offset in orders:
            order = await conn.fetchval(
                "INSERT INTO orders (user_id, total_cents, created_at) "
                "VALUES ($1, $2, to_timestamp($3)) RETURNING id",
                user,
                quantity * price,
                T + offset,
            )
            await conn.execute(
                "INSERT INTO order_lines (order_id, item_id, sku, quantity, unit_price_cents) "
                "VALUES ($1, $2, 'SYNTH', $3, $4)",
                order,
                item,
                quantity,
                price,
            )
        await conn.execute(
            "UPDATE items SET updated_at = to_timestamp($1) WHERE id = $2", T - 3600, item
        )
        await conn.execute("UPDATE users SET created_at = to_timestamp($1)", T - 3600)
        return int(user), int(item)
    finally:
        await conn.close()


def acked(order_id: int, quantity: int, offset: float) -> Acked:
    return Acked(order_id, T + offset - 0.05, T + offset, quantity * 7, (("SYNTH", quantity, 7),))


def run_task(url: str, ledger: OrderLedger, base: str, objects: dict[str, bytes]) -> int:
    objects["/ledger"] = json.dumps(ledger.to_json()).encode()
    conn = ConnInfo.from_url(url)
    environ = {
        "DATABASE_URL": f"{url}?sslmode=disable",
        "DB_ADMIN_USERNAME": conn.user,
        "DB_ADMIN_PASSWORD": conn.password,
        "COPY_ADMIN_PASSWORD": conn.password,
        "LEDGER_GET_URL": f"{base}/ledger",
        "VERDICT_PUT_URL": f"{base}/verdict",
    }
    where = ["--copy-host", conn.host, "--copy-port", str(conn.port)]
    return backup_task.main(["pitr-verify", "--id", "pitr-drill-x", *where], environ)


def test_a_copy_holding_exactly_the_orders_before_t_passes_with_its_rpo(
    fresh_database: str, bucket: tuple[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Two orders committed before T (the newest 1.5 s before it); the third came after T.
    user, item = asyncio.run(copy_as_of_t(fresh_database, [(1, 7, -4), (2, 7, -1.5)], STOCK - 3))
    ledger = OrderLedger(T, user, item, (acked(1, 1, -4), acked(2, 2, -1.5), acked(3, 3, 2)))
    base, objects = bucket
    assert run_task(fresh_database, ledger, base, objects) == 0
    verdict = json.loads(objects["/verdict"])
    assert verdict["ok"] is True and verdict["mismatches"] == []
    assert (verdict["orders_written"], verdict["orders_expected"], verdict["orders_in_copy"]) == (
        3,
        2,
        2,
    )
    assert verdict["rpo_s"] == pytest.approx(1.5, abs=0.01)
    assert verdict["newest_write"].startswith("2026-12-03T")
    assert verdict["first_answer_at"] > 0
    printed = capsys.readouterr().out
    assert json.loads(printed.split(backup_task.REPORT_MARKER, 1)[1])["ok"] is True


def test_missing_unexpected_and_mismatched_rows_fail_the_task_by_name(
    fresh_database: str, bucket: tuple[str, dict[str, bytes]]
) -> None:
    # In the copy: order 1 with a wrong total, order 2 which came after T, and a stock that
    # does not add up; order 3, acknowledged before T, is not there.
    async def damaged() -> tuple[int, int]:
        user, item = await copy_as_of_t(fresh_database, [(1, 7, -4), (1, 7, 2)], STOCK - 1)
        conn = await asyncpg.connect(fresh_database)
        try:
            await conn.execute("UPDATE orders SET total_cents = 999 WHERE id = 1")
        finally:
            await conn.close()
        return user, item

    user, item = asyncio.run(damaged())
    ledger = OrderLedger(T, user, item, (acked(1, 1, -4), acked(3, 2, -1.5), acked(2, 1, 2)))
    base, objects = bucket
    assert run_task(fresh_database, ledger, base, objects) == 1
    verdict = json.loads(objects["/verdict"])
    assert verdict["ok"] is False
    problems = "\n".join(verdict["mismatches"])
    assert "order 1: total 999 != 7" in problems
    assert "order 3 (acknowledged 2026-12-03" in problems and "is missing" in problems
    assert "order 2 (started 2026-12-03" in problems and "after T) is in the copy" in problems
    assert f"stock {STOCK - 1} != {STOCK - 3} expected from the orders" in problems


def test_an_unreadable_ledger_stops_the_task_with_the_reason(
    fresh_database: str, bucket: tuple[str, dict[str, bytes]]
) -> None:
    base, objects = bucket
    conn = ConnInfo.from_url(fresh_database)
    environ = {
        "DATABASE_URL": f"{fresh_database}?sslmode=disable",
        "DB_ADMIN_USERNAME": conn.user,
        "DB_ADMIN_PASSWORD": conn.password,
        "COPY_ADMIN_PASSWORD": conn.password,
        "LEDGER_GET_URL": f"{base}/expired",
        "VERDICT_PUT_URL": f"{base}/verdict",
    }
    with pytest.raises(RuntimeError, match="the order ledger could not be read: HTTP 404"):
        backup_task.main(
            ["pitr-verify", "--id", "x", "--copy-host", conn.host, "--copy-port", str(conn.port)],
            environ,
        )
    assert "/verdict" not in objects
