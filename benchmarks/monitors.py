"""Several monitors in one agent: peak RSS, dropped windows and CPU per window, on one core.

    nice .venv/bin/python benchmarks/monitors.py [--monitors 1 4 8] [--seconds 120] [--hop 10]

Each count runs in its own child process pinned to ONE core (`os.sched_setaffinity`), so its
peak RSS (`ru_maxrss`) is that of an agent alone and its CPU is what one core gives it. The
child runs the real `edge_agent.agent.Agent` on the shipped demo bundle with N monitors, each
replaying the demo clips in a loop at real time (`source.realtime: true`, so the agent treats
them as live sources: a window the worker has no room for is dropped and counted, exactly as
with microphones), one model for all of them, no MQTT, history off (the SD card is not what
is measured). It stops after `--seconds`. Reported per count: windows scored, windows dropped,
process CPU seconds per scored window (everything: pacing, windowing, frontend, inference,
backend, events), peak RSS, and RSS relative to one monitor. Audio capture itself (PortAudio's
callback thread) is not in these numbers; it is a copy per block.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any


def child(n: int, seconds: float, hop: float) -> dict[str, Any]:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from edge_agent.agent import Agent
    from edge_agent.commands.demo import load_demo
    from edge_agent.config.load import load_config

    demo = load_demo()
    clips = [str(p) for p in demo.paths]
    with tempfile.TemporaryDirectory() as tmp:
        monitors = [
            {
                "name": f"machine_{i}",
                "section": demo.section,
                "source": {
                    "kind": "files",
                    "realtime": True,
                    "loop": True,
                    "files": clips[i % len(clips) :] + clips[: i % len(clips)],
                },
            }
            for i in range(n)
        ]
        cfg = load_config(
            None,
            {
                "bundle": str(demo.bundle),
                "monitors": monitors,
                "windows": {"hop": hop},
                "log": {"stdout": False},
                "history": {"enabled": False},
                "outbox": {"path": f"{tmp}/outbox.sqlite"},
            },
        )

        class Count:
            def __init__(self) -> None:
                self.dropped = 0

            def handle(self, event: Any) -> None:
                if event["kind"] == "health" and event["event"] == "windows_dropped":
                    self.dropped += int(event["count"])  # drops are summarised

            def close(self) -> None:
                pass

        sink = Count()
        agent = Agent(cfg, sinks=[sink])
        t0 = os.times()
        timer = threading.Timer(seconds, agent.stop)
        timer.start()
        agent.run(install_signals=False)
        t1 = os.times()
        timer.cancel()
    c = agent.counters
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    return {
        "monitors": n,
        "seconds": seconds,
        "hop": hop,
        "scored": c["scored"],
        "windows_dropped": c["windows_dropped"],
        "faults": c["faults"],
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_window": round(1000 * cpu / max(1, c["scored"]), 1),
        "core_busy_pct": round(100 * cpu / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--monitors", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--hop", type=float, default=10.0)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.seconds, args.hop)))
        return
    rows = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for n in args.monitors:
        r = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--seconds",
                str(args.seconds),
                "--hop",
                str(args.hop),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r["peak_rss_mb"] for r in rows if r["monitors"] == 1), None)
    print(
        "\n| monitors | windows scored | dropped | CPU ms / window | core busy | peak RSS "
        "| RSS vs 1 |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rel = f"{r['peak_rss_mb'] / base:.2f}x" if base else "-"
        print(
            f"| {r['monitors']} | {r['scored']} | {r['windows_dropped']} | "
            f"{r['cpu_ms_per_window']} | {r['core_busy_pct']} % | {r['peak_rss_mb']} MB | "
            f"{rel} |"
        )
    print(
        f"\n{args.seconds:g} s per count, hop {args.hop:g} s, one core, host "
        f"{os.uname().machine}; {time.strftime('%Y-%m-%d')}"
    )


if __name__ == "__main__":
    main()
