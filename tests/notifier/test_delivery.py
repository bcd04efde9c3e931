"""Sending: schedule, outages, 410, redirects, timeouts, Retry-After, rotation, replay (W1-W9)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from gen_notifier import deliveries, endpoints
from gen_notifier.schedule import ManualClock

from tests.harness.receiver import Receiver, Reply, always, check, fail_first
from tests.notifier.conftest import KEY, MakeSender, attempts_of, enqueue, options

pytestmark = pytest.mark.pg


async def status_of(pool: asyncpg.Pool, msg_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM webhook_deliveries WHERE msg_id = $1", msg_id)
    assert row is not None
    return row


async def test_three_500s_follow_the_schedule_then_delivered(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options()
    sender = make_sender(o)
    with Receiver([KEY], fail_first(3)) as rx:
        msg_id = await enqueue(pool, o, clock, rx.hook())
        for _ in range(4):
            await sender.run_once()
            row = await status_of(pool, msg_id)
            if row["status"] == "delivered":
                break
            assert await sender.run_once() == 0  # not due before its time
            clock.set(row["next_attempt_at"])
        got = rx.by_msg(msg_id)
    assert [r.answered for r in got] == [500, 500, 500, 200]
    assert all(r.verified for r in got)
    attempts = await attempts_of(pool, msg_id)
    assert [a["status_code"] for a in attempts] == [500, 500, 500, 200]
    gaps = [
        (b["attempted_at"] - a["attempted_at"]).total_seconds()
        for a, b in itertools.pairwise(attempts)
    ]
    for gap, scheduled in zip(gaps, (5, 300, 1800), strict=True):
        assert 0.8 * scheduled <= gap <= 1.2 * scheduled
    row = await status_of(pool, msg_id)
    assert (row["status"], row["attempts"]) == ("delivered", 4)


async def test_receiver_down_then_back_loses_nothing(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options(per_endpoint_in_flight=50)
    sender = make_sender(o)
    rx = Receiver([KEY]).start()
    url = rx.hook()
    rx.stop()
    ids = [await enqueue(pool, o, clock, url, body=b'{"n":%d}' % i) for i in range(20)]
    for _ in range(3):  # three rounds while it is down
        await sender.run_once()
        clock.advance(2 * 3600)
    rows = [await status_of(pool, i) for i in ids]
    assert {r["status"] for r in rows} == {"queued"}
    assert all(r["attempts"] == 3 for r in rows)
    rx.start()
    try:
        for _ in range(4):  # pooled connections to the dead server fail once, then retry
            clock.advance(10 * 3600)
            await sender.run_once()
    finally:
        rx.stop()
    rows = [await status_of(pool, i) for i in ids]
    assert {r["status"] for r in rows} == {"delivered"}
    assert {r.msg_id for r in rx.snapshot()} == set(ids)  # the same webhook-ids arrived
    assert all(r.verified for r in rx.snapshot())


async def test_410_disables_the_endpoint(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options()
    sender = make_sender(o)
    with Receiver([KEY], always(410)) as rx:
        first = await enqueue(pool, o, clock, rx.hook())
        await sender.run_once()
        later = await enqueue(pool, o, clock, rx.hook())
        clock.advance(3600)
        await sender.run_once()
        assert len(rx.snapshot()) == 1
    assert (await status_of(pool, first))["status"] == "disabled"
    assert (await status_of(pool, later))["status"] == "disabled"
    endpoint = await pool.fetchrow("SELECT * FROM webhook_endpoints WHERE url = $1", rx.hook())
    assert endpoint is not None
    assert endpoint["disabled_at"] is not None


async def test_redirect_is_not_followed(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options()
    sender = make_sender(o)
    with Receiver([KEY]) as target, Receiver([KEY]) as rx:
        rx.respond = always(302, headers={"location": target.hook()})
        assert target.hook() != rx.hook()
        msg_id = await enqueue(pool, o, clock, rx.hook())
        await sender.run_once()
        assert target.snapshot() == []
    row = await status_of(pool, msg_id)
    assert (row["status"], row["last_status_code"]) == ("queued", 302)
    (attempt,) = await attempts_of(pool, msg_id)
    assert (attempt["error_class"], attempt["succeeded"]) == ("redirect", False)


async def test_timeout_waits_at_least_the_overload_penalty(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options(timeout_s=0.5)
    sender = make_sender(o)
    with Receiver([KEY], always(200, delay_s=2.0)) as rx:
        msg_id = await enqueue(pool, o, clock, rx.hook())
        await sender.run_once()
    (attempt,) = await attempts_of(pool, msg_id)
    assert attempt["error_class"] == "timeout"
    assert attempt["duration_ms"] < 1500
    delay = (attempt["next_attempt_at"] - attempt["attempted_at"]).total_seconds()
    assert 0.8 * 60 <= delay <= 1.2 * 60  # base 5 s raised to the 60 s overload minimum


async def test_retry_after_is_clamped(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options()
    sender = make_sender(o)
    with Receiver([KEY]) as rx:
        rx.respond = lambda n, r: Reply(429 if n == 1 else 503, headers={"retry-after": "3600"})
        msg_id = await enqueue(pool, o, clock, rx.hook())
        await sender.run_once()  # 429 on attempt 1: base max(5, 60) -> clamp(3600, 60, 120)
        clock.set((await status_of(pool, msg_id))["next_attempt_at"])
        await sender.run_once()  # 503 on attempt 2: base 300 -> clamp(3600, 300, 600)
    first, second = await attempts_of(pool, msg_id)
    d1 = (first["next_attempt_at"] - first["attempted_at"]).total_seconds()
    d2 = (second["next_attempt_at"] - second["attempted_at"]).total_seconds()
    assert 0.8 * 120 <= d1 <= 1.2 * 120
    assert 0.8 * 600 <= d2 <= 1.2 * 600


async def test_rotation_old_secret_verifies_during_grace(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options(rotation_grace_s=3600)  # the clock must stay behind real time (see conftest)
    sender = make_sender(o)
    with Receiver(["whsec_bmV3LXNlY3JldC0xMjM0NTY3ODkwMTIzNDU2"]) as new_rx:
        url = new_rx.hook()
        async with pool.acquire() as conn:
            await endpoints.rotate_secret(
                conn,
                url,
                "whsec_b2xkLXNlY3JldC0xMjM0NTY3ODkwMTIzNDU2",
                shared_key=KEY,
                now=clock.now(),
                o=o,
            )
            await endpoints.rotate_secret(
                conn,
                url,
                "whsec_bmV3LXNlY3JldC0xMjM0NTY3ODkwMTIzNDU2",
                shared_key=KEY,
                now=clock.now(),
                o=o,
            )
            with pytest.raises(ValueError, match="empty"):
                await endpoints.rotate_secret(
                    conn, url, "whsec_", shared_key=KEY, now=clock.now(), o=o
                )
        msg_id = await enqueue(pool, o, clock, url)
        await sender.run_once()
        (got,) = new_rx.by_msg(msg_id)
    assert got.verified
    sigs = got.headers["webhook-signature"].split(" ")
    assert len(sigs) == 2  # the new and the old secret, both within the grace period
    assert check(["whsec_b2xkLXNlY3JldC0xMjM0NTY3ODkwMTIzNDU2"], got.headers, got.body)[
        2
    ]  # the old secret still verifies
    clock.advance(o.rotation_grace_s + 1)
    msg2 = await enqueue(pool, o, clock, url)
    old_rx = Receiver(["whsec_b2xkLXNlY3JldC0xMjM0NTY3ODkwMTIzNDU2"], port=new_rx.port)
    old_rx.path = new_rx.path
    with old_rx:
        for _ in range(3):  # the pooled connection to the stopped receiver may fail once
            await sender.run_once()
            clock.advance(3600)
        (after,) = old_rx.by_msg(msg2)
    assert not after.standard  # after the grace only the new secret signs
    assert len(after.headers["webhook-signature"].split(" ")) == 1


async def test_replay_one_and_since(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options(schedule_s=(5.0,))  # two attempts, then exhausted
    sender = make_sender(o)
    with Receiver([KEY], always(500)) as rx:
        ids = [await enqueue(pool, o, clock, rx.hook()) for _ in range(3)]
        since = (await status_of(pool, ids[0]))["created_at"]
        await sender.run_once()
        clock.advance(10)
        await sender.run_once()
        assert {(await status_of(pool, i))["status"] for i in ids} == {"exhausted"}
        async with pool.acquire() as conn:
            assert await deliveries.replay_one(conn, ids[0], clock.now()) == "replayed"
            assert await deliveries.replay_one(conn, "msg_nope", clock.now()) == "missing"
        await sender.run_once()  # manual attempt fails: not rescheduled
        row = await status_of(pool, ids[0])
        assert (row["status"], row["trigger"], row["attempts"]) == ("failed", "manual", 3)
        rx.respond = always(200)
        async with pool.acquire() as conn:
            replayed = await deliveries.replay_since(conn, since, clock.now())
        assert sorted(replayed) == sorted(ids)
        await sender.run_once()
    assert {(await status_of(pool, i))["status"] for i in ids} == {"delivered"}
    for i in ids:
        stamps = [r.headers["webhook-id"] for r in rx.by_msg(i)]
        assert stamps
        assert set(stamps) == {i}
    last = (await attempts_of(pool, ids[1]))[-1]
    assert (last["trigger"], last["succeeded"]) == ("manual", True)


async def test_dead_endpoint_breaker_does_not_hold_up_others(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options(breaker_min_attempts=5, breaker_open_s=600, per_endpoint_in_flight=4, timeout_s=0.5)
    sender = make_sender(o)
    with Receiver([KEY], always(200, delay_s=3)) as dead, Receiver([KEY]) as alive:
        stuck = [await enqueue(pool, o, clock, dead.hook()) for _ in range(10)]
        fine = [await enqueue(pool, o, clock, alive.hook()) for _ in range(4)]
        await sender.run_once()  # at most 4 in flight to the dead one; the live ones all go
        assert len(dead.snapshot()) == 4
        assert {r.msg_id for r in alive.snapshot()} == set(fine)
        clock.advance(120)
        await sender.run_once()  # 4 more attempts to the dead one -> 8 failures, 0 successes
        async with pool.acquire() as conn:
            opened = await endpoints.sample_breakers(conn, now=clock.now(), o=o)
        assert dead.hook() in opened
        assert alive.hook() not in opened
        clock.advance(120)
        before = len(dead.snapshot())
        await sender.run_once()  # breaker open: nothing is claimed for the dead endpoint
        assert len(dead.snapshot()) == before
        clock.advance(o.breaker_open_s + 1)
        await sender.run_once()  # half-open afterwards: it is tried again
        assert len(dead.snapshot()) > before
        dead.hold.set()
    rows = [await status_of(pool, i) for i in stuck]
    assert {r["status"] for r in rows} == {"queued"}


async def test_huge_response_body_is_capped(
    pool: asyncpg.Pool, clock: ManualClock, make_sender: MakeSender
) -> None:
    o = options()
    sender = make_sender(o)
    with Receiver([KEY], always(200, body=b"x" * 5_000_000)) as rx:
        msg_id = await enqueue(pool, o, clock, rx.hook())
        await sender.run_once()
    (attempt,) = await attempts_of(pool, msg_id)
    assert attempt["succeeded"]
    assert len(attempt["response_body"]) == o.response_max_bytes
    assert (await status_of(pool, msg_id))["status"] == "delivered"


async def test_endpoint_failing_for_five_days_is_disabled(
    pool: asyncpg.Pool, make_sender: MakeSender
) -> None:
    """W7: disabled exactly when every attempt failed for 5 days; a success resets the clock."""
    clock = ManualClock(datetime.now(UTC) - timedelta(days=20))
    o = options()
    sender = make_sender(o)
    sender.clock = clock
    outcome = {"status": 503}
    with Receiver([KEY], lambda _n, _r: Reply(outcome["status"])) as rx:
        disabled_on = None
        for day in range(12):
            outcome["status"] = 200 if day == 3 else 503
            await enqueue(pool, o, clock, rx.hook())  # one new delivery a day
            await sender.run_once()
            async with pool.acquire() as conn:
                dead = await endpoints.disable_dead(
                    conn, now=clock.now(), after_s=o.disable_after_s
                )
            if dead:
                assert dead == [rx.hook()]
                disabled_on = day
                break
            clock.advance(86_400)
    # failures from day 4 on (the day-3 success reset the clock): disabled on day 4 + 5
    assert disabled_on == 9
    queued = await pool.fetchval(
        """SELECT count(*) FROM webhook_deliveries d JOIN webhook_endpoints e
           ON e.id = d.endpoint_id WHERE e.url = $1 AND d.status = 'queued'""",
        rx.hook(),
    )
    assert queued == 0
