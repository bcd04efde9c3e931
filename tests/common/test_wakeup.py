"""gen_common.wakeup: one NOTIFY wakes one idle worker, and no wake-up is missed."""

from __future__ import annotations

import asyncio

from gen_common.wakeup import Wakeup


async def test_a_notify_wakes_one_waiter_not_all() -> None:
    wake = Wakeup()
    waiters = [asyncio.create_task(wake.wait(wake.generation, 5)) for _ in range(4)]
    await asyncio.sleep(0.01)
    wake.notify()
    await asyncio.sleep(0.01)
    assert sum(w.done() for w in waiters) == 1
    for _ in range(3):
        wake.notify()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)


async def test_a_notify_between_reading_the_generation_and_waiting_is_not_missed() -> None:
    wake = Wakeup()
    seen = wake.generation  # the worker reads it, then runs an empty claim...
    wake.notify()  # ...during which work arrives
    await asyncio.wait_for(wake.wait(seen, 5), 0.5)  # returns at once, no 5 s sleep


async def test_an_idle_wait_ends_at_its_timeout() -> None:
    wake = Wakeup()
    await asyncio.wait_for(wake.wait(wake.generation, 0.05), 1)
