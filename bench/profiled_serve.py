"""``attestor`` under yappi (CPU clock, every thread, builtins): the profiled server of
bench/attestor_throughput.py. ``SIGUSR1`` clears the statistics (the start of the
measured window), ``SIGUSR2`` writes them to OUT as JSON (its end).

Usage: python -m bench.profiled_serve OUT serve --dev -d DATA --port P
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType

import yappi  # type: ignore[import-untyped]


def dump(out: Path) -> None:
    """Per function: its own CPU seconds and, per callee, the callee's own seconds under
    it (bench/cpu_split.py charges a callee with no category to its caller)."""
    stats = yappi.get_func_stats()
    rows = [{"name": s.full_name, "module": s.module, "builtin": bool(s.builtin),
             "tsub": s.tsub, "children": [[c.full_name, c.tsub] for c in s.children]}
            for s in stats]
    out.write_text(json.dumps(rows))


def main() -> None:
    out = Path(sys.argv[1])

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            yappi.clear_stats()
        else:
            dump(out)

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGUSR2, on_signal)
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True, profile_threads=True)
    sys.argv = ["attestor", *sys.argv[2:]]
    from attestor.cli import main as attestor_main

    attestor_main()


if __name__ == "__main__":
    main()
