"""Everything one simulator instance holds, built once in create_app()."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openai_sim.batch_engine import BatchEngine
from openai_sim.clock import SimClock
from openai_sim.faults import Faults
from openai_sim.file_store import FileStore
from openai_sim.ratelimit import RateLimiter
from openai_sim.stats import Stats
from openai_sim.tokens import PromptCache


@dataclass(slots=True)
class Sim:
    cfg: dict[str, Any]
    clock: SimClock
    faults: Faults
    limiter: RateLimiter
    cache: PromptCache
    stats: Stats
    files: FileStore
    batches: BatchEngine

    def apply_config(self, patch: dict[str, Any]) -> None:
        """Re-read the parts of the config that objects copied at construction."""
        self.clock.set_speed(float(self.cfg["clock"]["speed"]))
        self.cache.ttl_s = float(self.cfg["cache"]["ttl_s"])
        self.cache.max_entries = int(self.cfg["cache"]["max_entries"])
        self.stats.log_size = int(self.cfg["call_log_size"])
        if "storm" in patch:
            self.faults.arm_storm()


def build(cfg: dict[str, Any]) -> Sim:
    clock = SimClock(speed=float(cfg["clock"]["speed"]), start=cfg["clock"].get("start"))
    files = FileStore(clock)
    cache = PromptCache(ttl_s=cfg["cache"]["ttl_s"], max_entries=cfg["cache"]["max_entries"])
    sim = Sim(
        cfg=cfg,
        clock=clock,
        faults=Faults(cfg),
        limiter=RateLimiter(cfg["rate_limits"], cfg["organization"]),
        cache=cache,
        stats=Stats(log_size=cfg["call_log_size"]),
        files=files,
        batches=BatchEngine(cfg=cfg, clock=clock, files=files),
    )
    sim.faults.arm_storm()
    return sim
