"""End to end through every service as a real process: sync lots, direct production to Kafka,
hostile input through ingest, and cancelling a job mid-flight through status."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from gen_common import kafka
from gen_common.events import LotSubmitted

from tests.harness import checker
from tests.harness.processes import eventually
from tests.harness.system import System, announce

pytestmark = [pytest.mark.pg, pytest.mark.kafka, pytest.mark.e2e]


async def job_of_lot(pool: asyncpg.Pool, lot_id: str) -> uuid.UUID:
    job: uuid.UUID = await pool.fetchval(
        "SELECT job_id FROM lots WHERE lot_id = to_jsonb($1::text)", lot_id
    )
    return job


def vision_calls(system: System, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        c
        for c in system.sim.admin.calls()
        if c.get("kind") == "vision" and (c.get("metadata") or {}).get("job_id") == str(job_id)
    ]


async def test_sync_lot_en_ru_de_with_missing_and_broken_images(
    system: System, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    ok = [system.images.ok(f"{tag}-{i}") for i in range(5)]
    missing, broken = system.images.missing(f"{tag}-m"), system.images.broken(f"{tag}-b")
    lot_id = f"sync-{tag}"
    lot = {"lot_id": lot_id, "images": [{"url": u} for u in [*ok[:2], missing, *ok[2:], broken]]}
    started = time.monotonic()
    response = await system.client(http).generate([lot], ["en", "ru", "de"])
    took = time.monotonic() - started
    assert response.status_code == 200, response.text
    body = response.json()
    (answer,) = body["lots"]
    assert answer["lot_id"] == lot_id
    assert [d["language"] for d in answer["descriptions"]] == ["en", "ru", "de"]
    en, ru, de = (d["damages"] for d in answer["descriptions"])
    assert en.startswith("<p>")
    assert "[ru]" not in en
    assert "[ru]" in ru  # the simulator marks each translation with its target language
    assert "[de]" in de
    assert sorted(answer["missing_images"]) == sorted([missing, broken])
    assert body["version"] == "1.0.0"
    assert "pending_languages" not in body

    job_id = await job_of_lot(pool, lot_id)
    calls = vision_calls(system, job_id)
    answered = [c for c in calls if not c.get("errored")]
    assert len(answered) == 1, calls
    assert sorted(answered[0]["image_urls"]) == sorted(ok)  # every valid image attached
    assert all(set(ok) <= set(c["image_urls"]) for c in calls)
    assert all(missing not in c["image_urls"] for c in calls)  # our check dropped the 404
    found = await checker.settle(pool, system, checker.Expect(job_id, languages=2))
    assert not found, found
    announce("sync lot", {"seconds": round(took, 3)})


async def test_sync_lot_over_the_unreachable_threshold_is_400(
    system: System, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """5 images with one 404 and one the model cannot download: 2/5 = 40 % > 30 % (contract)."""
    tag = uuid.uuid4().hex[:8]
    ok = [system.images.ok(f"{tag}-{i}") for i in range(3)]
    missing, broken = system.images.missing(f"{tag}-m"), system.images.broken(f"{tag}-b")
    lot = {"lot_id": f"sync-{tag}", "images": [{"url": u} for u in [*ok, missing, broken]]}
    response = await system.client(http).generate([lot], ["en", "ru", "de"])
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "image_unreachable"
    assert sorted(body["missing_images"]) == sorted([missing, broken])
    job_id = await job_of_lot(pool, f"sync-{tag}")
    expect = checker.Expect(job_id, languages=2, statuses=("failed",))
    found = await checker.settle(pool, system, expect)
    assert not found, found


async def test_direct_production_creates_and_completes_the_job(
    system: System, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    job_id, total = uuid.uuid4(), 20
    hook, done = f"/hook/direct/{job_id}", f"/done/direct/{job_id}"
    events = [
        LotSubmitted(
            job_id=job_id,
            lot_seq=seq,
            lot_id=f"direct-{seq}",
            images=[system.images.ok(f"{job_id}-{seq}-{i}") for i in range(2)],
            languages=["en", "fr"],
            mode="realtime",
            total_lots=total,
            client_id="direct-e2e",
            webhook=system.receiver.hook(hook),
            job_webhook_url=system.receiver.hook(done),
        )
        for seq in range(total)
    ]
    async with kafka.open_publisher(system.kafka) as publisher:
        await publisher.publish_many(events)
    client = system.client(http)

    async def completed() -> bool:
        response = await client.batch_status(str(job_id))
        return response.status_code == 200 and response.json()["status"] == "completed"

    await eventually(completed, timeout=90, interval=0.2)
    status = (await client.batch_status(str(job_id))).json()
    assert status["progress"]["completion_percentage"] == 100
    assert status["progress"]["processed_lots"] == total

    expect = checker.Expect(job_id, 1, hook_path=hook, completion_path=done)
    found = await checker.settle(pool, system, expect)
    assert not found, found
    (completion,) = {r.msg_id: r for r in system.receiver.snapshot() if r.path == done}.values()
    assert completion.json["status"] == "completed"
    assert completion.json["completed_lots"] == total


HOSTILE: list[tuple[str, bytes, str]] = [
    ("invalid json", b'{"signature": "x", "lots": [', "application/json"),
    ("json null", b"null", "application/json"),
    ("json array", b"[1, 2, 3]", "application/json"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "application/json"),
    (
        "NaN and huge int",
        b'{"signature":NaN,"version":"1.0.0","languages":["en"],"lots":[{"lot_id":'
        + b"9" * 5000
        + b"}]}",
        "application/json",
    ),
    ("invalid utf-8", b'{"signature":"\xff\xfe","version":"1.0.0"}', "application/json"),
    ("not json content type", b"lots=1", "application/x-www-form-urlencoded"),
    (
        "bad signature",
        b'{"signature":"00","version":"1.0.0","languages":["en"],"lots":[{"lot_id":"x"}]}',
        "application/json",
    ),
]


@pytest.mark.parametrize(("name", "body", "ctype"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_input_is_a_json_4xx(
    system: System, http: httpx.AsyncClient, name: str, body: bytes, ctype: str
) -> None:
    response = await system.client(http).post_raw(body, ctype)
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:200])
    assert "error" in response.json()


async def test_hostile_shapes_and_routes_are_4xx(system: System, http: httpx.AsyncClient) -> None:
    client = system.client(http)
    lots: list[Any] = [{"lot_id": "x", "images": "not-a-list"}, 5]
    odd_languages: list[Any] = [None, 1]
    answers = [
        await client.generate(lots, ["en"]),
        await client.generate([{"lot_id": {"a": 1}, "images": [{"url": 5}]}], odd_languages),
        await client.generate(
            [{"lot_id": "y", "images": [{"url": "http://169.254.169.254/x"}]}], ["en"]
        ),
        await http.get(f"{system.ingest_url}/api/v1/generate-descriptions"),
        await http.delete(f"{system.ingest_url}/nope"),
        await client.get("/api/v1/batch-status/not-a-uuid"),
        await client.get(f"/api/v1/batch-results/{uuid.uuid4()}", sign="wrong"),
        await http.post(f"{system.status_url}/api/v1/batch-jobs/{uuid.uuid4()}/cancel"),
    ]
    for response in answers:
        assert 400 <= response.status_code < 500, (response.request.url, response.text[:200])
        assert "error" in response.json()


async def test_cancel_mid_job_stops_the_pipeline(
    system: System, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    total, tag = 120, uuid.uuid4().hex[:8]
    done = f"/done/cancel/{tag}"
    system.sim.admin.config({"latency": {"kinds": {"vision": {"dist": "fixed", "ms": 1500}}}})
    try:
        lots = [
            {"lot_id": f"c-{tag}-{i}", "images": [{"url": system.images.ok(f"{tag}-{i}")}]}
            for i in range(total)
        ]
        client = system.client(http)
        response = await client.generate(lots, ["en", "ru"], webhook_url=system.receiver.hook(done))
        assert response.status_code == 201, response.text
        job_id = uuid.UUID(response.json()["job_id"])

        async def some_done() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM lots WHERE job_id = $1 AND status = 'completed'", job_id
            )
            return int(n) >= 5

        await eventually(some_done, timeout=60, interval=0.1)
        answer = await client.cancel(str(job_id))
        assert answer.status_code == 200, answer.text
        assert (await client.batch_status(str(job_id))).json()["status"] == "cancelled"
        cancelled_at = await pool.fetchval(
            "SELECT cancelled_at FROM jobs WHERE job_id = $1", job_id
        )

        async def stages_heard() -> bool:  # each stage cancels its queued rows in one statement
            queued = await pool.fetchval(
                "SELECT (SELECT count(*) FROM vision_work WHERE job_id = $1 AND status = 'queued')"
                " + (SELECT count(*) FROM translate_work WHERE job_id = $1 AND status = 'queued')",
                job_id,
            )
            return not queued

        await eventually(stages_heard, timeout=30, interval=0.02)
        # In flight = claimed by a vision or translate worker when that stage applied the cancel
        # (a claimed lot may still be waiting to start its call), translated and on its way to
        # the notifier, or already finished by now.
        snapshot = await pool.fetch(
            "SELECT lot_seq FROM vision_work WHERE job_id = $1 AND status = 'running' "
            "UNION SELECT lot_seq FROM translate_work WHERE job_id = $1 AND status = 'running' "
            "UNION SELECT lot_seq FROM lots WHERE job_id = $1 AND completed_at > $2 "
            # translated before the cancel: its LotTranslated is on its way to the notifier
            "UNION SELECT lot_seq FROM translate_lots WHERE job_id = $1 "
            "AND translated_at <= $2",
            job_id,
            cancelled_at,
        )
        in_flight = {r["lot_seq"] for r in snapshot}
        done_before = await pool.fetchval(
            "SELECT count(*) FROM lots WHERE job_id = $1 AND status = 'completed' "
            "AND completed_at <= $2",
            job_id,
            cancelled_at,
        )

        async def settled() -> bool:
            rows = await pool.fetchval(
                "SELECT count(*) FROM lots WHERE job_id = $1 AND status NOT IN "
                "('completed', 'failed', 'cancelled')",
                job_id,
            )
            work = await pool.fetchval(
                "SELECT (SELECT count(*) FROM vision_work WHERE job_id = $1 AND status IN "
                "('queued','running')) + (SELECT count(*) FROM translate_work WHERE job_id = $1 "
                "AND status IN ('queued','running'))",
                job_id,
            )
            return bool(rows == 0 and work == 0)

        await eventually(settled, timeout=60, interval=0.2)
        job = await pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job_id)
        assert job is not None
        assert job["status"] == "cancelled"
        late = await pool.fetch(
            "SELECT lot_seq FROM lots WHERE job_id = $1 AND status = 'completed' "
            "AND completed_at > $2",
            job_id,
            cancelled_at,
        )
        called_after = await pool.fetch(
            "SELECT lot_seq, started_at FROM vision_calls WHERE job_id = $1 AND started_at > $2",
            job_id,
            cancelled_at,
        )
        report = {
            "lots": total,
            "completed_before_cancel": done_before,
            "in_flight_at_cancel": len(in_flight),
            "completed_after_cancel": len(late),
            "vision_calls_started_after_cancel": len(called_after),
            "last_call_start_after_cancel_s": max(
                ((r["started_at"] - cancelled_at).total_seconds() for r in called_after),
                default=0,
            ),
            "completed": job["completed_lots"],
            "failed_lots_counter": job["failed_lots"],
        }
        announce("cancel", report)
        assert {r["lot_seq"] for r in late} <= in_flight, report
        assert {r["lot_seq"] for r in called_after} <= in_flight, report
        cancelled = await pool.fetchval(
            "SELECT count(*) FROM lots WHERE job_id = $1 AND status = 'cancelled'", job_id
        )
        assert cancelled >= total - done_before - len(in_flight), report
        sim_calls = len(vision_calls(system, job_id))
        started = await pool.fetchval("SELECT count(*) FROM vision_calls WHERE job_id = $1", job_id)
        assert sim_calls <= started, (sim_calls, started)

        expect = checker.Expect(
            job_id,
            1,
            completion_path=done,
            statuses=("completed", "cancelled"),
            in_flight=len(in_flight),
        )
        found = await checker.settle(pool, system, expect)
        assert not found, found
        (sent,) = {r.msg_id: r for r in system.receiver.snapshot() if r.path == done}.values()
        assert sent.json["status"] == "cancelled"
    finally:
        system.sim.admin.config({"latency": {"kinds": {"vision": {"dist": "fixed", "ms": 0}}}})
