"""``python bench/cpu_profile.py OUT MODULE``: run ``python -m MODULE`` under cProfile with a
CPU-time clock (``time.process_time``), so time a process spends preempted on a loaded machine
is not charged to the function that happened to run; the stats are written to OUT on exit."""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    out, module = sys.argv[1], sys.argv[2]
    sys.argv = [module]
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profile.disable()
        profile.dump_stats(out)


if __name__ == "__main__":
    main()
