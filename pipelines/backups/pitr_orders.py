"""The point-in-time drill's writing side, the same on every target: a shopper places
orders through the environment's API one at a time while the drill keeps the client's
ledger (when each request started and was acknowledged, and what came back), and a moment
T is picked with no request in flight, so every order is cleanly before or after it.

The ledger travels as JSON (`OrderLedger.to_json`) where the verification runs apart from
the drill, as in a one-off task inside a VPC."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipelines.backups.pitr_report import iso_ms
from pipelines.traffic import synthetic
from pipelines.traffic.smoke import bearer

INITIAL_STOCK = 10_000_000  # what pipelines.traffic.synthetic gives its item
QUIET_S = 0.2


@dataclass(frozen=True)
class Acked:
    id: int
    started: float
    acked: float
    total_cents: int
    lines: tuple[tuple[str, int, int], ...]  # sku, quantity, unit price


@dataclass
class OrderWriter:
    """Places orders one at a time; holding `gate` keeps the next one from starting."""

    base_url: str
    token: str
    sku: str
    acked: list[Acked] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    gate: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            n = 0
            while not self.stopping.is_set():
                n += 1
                body = {"items": [{"sku": self.sku, "quantity": 1 + n % 3}]}
                with self.gate:
                    started = time.time()
                    try:
                        response = client.post("/api/orders", headers=bearer(self.token), json=body)
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                        continue
                    acked = time.time()
                if response.status_code != 201:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                order = response.json()
                lines = tuple(
                    (i["sku"], int(i["quantity"]), int(i["unit_price_cents"]))
                    for i in order["items"]
                )
                self.acked.append(
                    Acked(int(order["id"]), started, acked, int(order["total_cents"]), lines)
                )
                time.sleep(0.01)


def pick_moment(writer: OrderWriter, quiet_s: float = QUIET_S, whole_second: bool = False) -> float:
    """A moment with no order in flight for `quiet_s` either side: every order is wholly
    before or after it. `whole_second` for restores that take a time to the second (RDS):
    the writer is held across the next whole second, which becomes T."""
    with writer.gate:
        time.sleep(quiet_s)
        moment = time.time()
        if whole_second:
            moment = float(math.ceil(moment))
            time.sleep(max(0.0, moment - time.time()))
        time.sleep(quiet_s)
    return moment


def write_around_a_moment(
    base_url: str,
    token: str,
    sku: str,
    *,
    before_s: float,
    after_s: float,
    log: Callable[[str], None],
    quiet_s: float = QUIET_S,
    whole_second: bool = False,
) -> tuple[OrderWriter, float]:
    """Steps 1 and 2 of the drill: orders for `before_s`, T, orders for `after_s`."""
    writer = OrderWriter(base_url, token, sku)
    thread = threading.Thread(target=writer.run, daemon=True)
    log(f"pitr drill [1/5] writing orders through {base_url} for {before_s:g} s")
    thread.start()
    try:
        time.sleep(before_s)
        moment = pick_moment(writer, quiet_s, whole_second)
        log(f"pitr drill [2/5] T = {iso_ms(moment)}; writing on for {after_s:g} s")
        time.sleep(after_s)
    finally:
        writer.stopping.set()
        thread.join(15)
    return writer, moment


@dataclass(frozen=True)
class OrderLedger:
    """What the verification needs: T, whose orders and which item, and every order the
    API acknowledged."""

    point: float
    user_id: int
    item_id: int
    acked: tuple[Acked, ...]
    initial_stock: int = INITIAL_STOCK

    def to_json(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "point_iso": iso_ms(self.point),
            "user_id": self.user_id,
            "item_id": self.item_id,
            "initial_stock": self.initial_stock,
            "acked": [
                {
                    "id": o.id,
                    "started": o.started,
                    "acked": o.acked,
                    "total_cents": o.total_cents,
                    "lines": [list(line) for line in o.lines],
                }
                for o in self.acked
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrderLedger:
        try:
            acked = tuple(
                Acked(
                    int(o["id"]),
                    float(o["started"]),
                    float(o["acked"]),
                    int(o["total_cents"]),
                    tuple((str(s), int(q), int(p)) for s, q, p in o["lines"]),
                )
                for o in data["acked"]
            )
            return cls(
                float(data["point"]),
                int(data["user_id"]),
                int(data["item_id"]),
                acked,
                int(data.get("initial_stock", INITIAL_STOCK)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a point-in-time drill's order ledger: {exc!r}") from None


@dataclass
class ApiOrders:
    """Orders through an environment's public URL by a throwaway shopper and item
    (`pipelines.traffic.synthetic`), deleted again by `cleanup`."""

    base_url: str
    credentials: Callable[[], tuple[str, str]]  # the smoke admin, made on first use
    log: Callable[[str], None] = print
    fixture: synthetic.Fixture | None = None

    def write(
        self, before_s: float, after_s: float, quiet_s: float
    ) -> tuple[OrderLedger, list[str]]:
        self.fixture = synthetic.prepare(self.base_url, *self.credentials())
        writer, moment = write_around_a_moment(
            self.base_url,
            self.fixture.user_token,
            self.fixture.sku,
            before_s=before_s,
            after_s=after_s,
            log=self.log,
            quiet_s=quiet_s,
            whole_second=True,
        )
        book = OrderLedger(moment, self.fixture.user_id, self.fixture.item_id, tuple(writer.acked))
        return book, writer.failures

    def cleanup(self) -> list[str]:
        return synthetic.cleanup(self.base_url, self.fixture) if self.fixture else []
