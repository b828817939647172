"""`appliance serve` under yappi (CPU clock, every thread), for bench/gateway_bench.py
--profile. py-spy could not attach to processes on the 2-core dev VM ("Failed to find
python version from target process"), so the gateway profiles itself.

    python bench/profiled_serve.py OUT.pstat --config appliance.yaml

Send it SIGUSR1 once warmed up: the profile then holds only what came after.
"""

from __future__ import annotations

import atexit
import signal
import sys

import yappi


def main() -> None:
    out = sys.argv[1]
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True)

    def dump() -> None:
        yappi.stop()
        yappi.get_func_stats().save(out, type="pstat")

    atexit.register(dump)
    # SIGUSR1 after warm-up: forget start-up (imports, app building) and first calls.
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: yappi.clear_stats())
    sys.argv = ["appliance", "serve", *sys.argv[2:]]
    from appliance.cli.main import main as appliance_main

    appliance_main()


if __name__ == "__main__":
    main()
