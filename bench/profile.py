"""``python -m bench.profile``: where the gateway and the worker spend their time under load.

Starts the benchmark's own stack with the gateway and the worker each run under
pyinstrument (a sampling profiler; installed into ``bench/.tools/py`` on first use, never
into the project's environment), drives closed-loop load through the gateway (single
events, then 20-event requests), lets the worker drain, stops both, and writes for each
``bench/results/profile-<process>.txt`` (pyinstrument's call tree) and a table of the
functions with the most self time to ``bench/results/profile.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.loadgen import build_loadgen, run_loadgen
from bench.payloads import write_bodies
from bench.run import say
from bench.stack import BenchStack, Service

_TOOLS = Path(__file__).resolve().parent / ".tools" / "py"
_RESULTS = Path(__file__).resolve().parent / "results"
_PYINSTRUMENT = "pyinstrument>=5,<6"


def ensure_pyinstrument() -> None:
    if not (_TOOLS / "pyinstrument").is_dir():
        say(f"installing {_PYINSTRUMENT} into {_TOOLS} (pip --target; first use only)")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(_TOOLS), _PYINSTRUMENT],
            check=True,
        )  # fmt: skip
    if str(_TOOLS) not in sys.path:
        sys.path.insert(0, str(_TOOLS))


def profiled(service: Service, session: Path) -> Service:
    """The same service, run as ``python -m pyinstrument -r session -o FILE -m trackflow ...``."""
    service.python_args = [
        "-m",
        "pyinstrument",
        "-i",
        "0.002",
        "-r",
        "pyisession",
        "-o",
        str(session),
    ]
    service.env["PYTHONPATH"] = os.pathsep.join(
        [str(_TOOLS), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return service


_PROJECT = ("ingest_gateway/", "processors/", "schemas/", "trackflow/")


def times(session_path: Path, top: int) -> dict[str, Any]:
    """Self time by function (top ``top``), and inclusive time of the project's own code."""
    from pyinstrument.session import Session

    session = Session.load(str(session_path))
    root = session.root_frame()
    own: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    stack = [(root, frozenset[str]())] if root is not None else []
    while stack:
        frame, above = stack.pop()
        if frame.is_synthetic:
            continue  # [self], [await] markers: their time stays with the real frame
        where = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
        real = [c for c in frame.children if not c.is_synthetic]
        self_time = frame.time - sum(c.time for c in real)
        if self_time > 0:
            own[where] += self_time
        path = frame.file_path_short or ""
        if path.startswith(_PROJECT) and where not in above and frame.function != "<module>":
            inclusive[where] += frame.time  # once per stack, so recursion is not doubled
        stack.extend((c, above | {where}) for c in real)
    return {
        "duration": session.duration,
        "cpu_time": session.cpu_time,
        "self": sorted(((t, w) for w, t in own.items()), reverse=True)[:top],
        "project": sorted(((t, w) for w, t in inclusive.items()), reverse=True)[:top],
    }


def profile_section(name: str, session_path: Path, top: int) -> list[str]:
    """Markdown for one process: wall and CPU time, then the top functions by self time and
    trackflow's own functions by inclusive time."""
    found = times(session_path, top)
    duration, cpu = found["duration"], found["cpu_time"]
    lines = [
        f"## {name}: {duration:.0f} s wall, {cpu:.0f} s CPU ({cpu / duration:.0%} of a core)",
        "",
        f"Top {top} functions by self time (wall time; idle in the event loop included):",
        "",
        "| self s | share | function |",
        "|---|---|---|",
    ]
    lines += [f"| {t:.2f} | {t / duration:.1%} | `{w}` |" for t, w in found["self"]]
    lines += [
        "",
        "trackflow's own code by inclusive time (what runs below it, awaits excluded):",
        "",
        "| inclusive s | share | function |",
        "|---|---|---|",
    ]
    lines += [f"| {t:.2f} | {t / duration:.1%} | `{w}` |" for t, w in found["project"]]
    return [*lines, ""]


def render_text(session_path: Path, out: Path) -> None:
    from pyinstrument.renderers import ConsoleRenderer
    from pyinstrument.session import Session

    session = Session.load(str(session_path))
    renderer = ConsoleRenderer(unicode=True, color=False, show_all=False, short_mode=False)
    out.write_text(renderer.render(session))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="each load phase")
    parser.add_argument("--top", type=int, default=25, help="functions listed per process")
    parser.add_argument("--out", type=Path, default=_RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="bench: %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retries while topics settle
    ensure_pyinstrument()
    loadgen = build_loadgen(say)
    stack = BenchStack(say, keep=args.keep)
    sessions = {
        "gateway": stack.state / "gateway.pyisession",
        "worker": stack.state / "worker.pyisession",
    }
    try:
        stack.start()
        worker = profiled(stack.worker(), sessions["worker"])
        gateway = profiled(stack.gateway(), sessions["gateway"])
        say("starting worker and gateway under pyinstrument")
        worker.start()
        gateway.start()
        phases: list[dict[str, Any]] = []
        for events in (1, 20):
            tag = f"profile-{events}"
            bodies = write_bodies(stack.state / "bodies" / f"{tag}.jsonl", events, tag)
            say(f"{events}-event requests at maximum (closed loop, 64 clients), {args.seconds:g} s")
            run = run_loadgen(loadgen, f"{gateway.url}/track", bodies, duration=args.seconds)
            say(f"   {run['ok_throughput']:.0f} req/s 2xx, p99 {run['latency_ms']['p99']:.1f} ms")
            phases.append({"events": events, "req_per_s": run["ok_throughput"]})
        say("letting the worker drain for 15 s")
        time.sleep(15)
        # uvicorn re-raises the signal it stopped on: SIGINT becomes KeyboardInterrupt,
        # which pyinstrument catches to write its session; SIGTERM would kill it first.
        gateway.stop(timeout=60, sig=signal.SIGINT)
        worker.stop(timeout=60)
        report = [
            "# Profiles under load (pyinstrument, sampling every 2 ms)",
            "",
            "Load: "
            + "; ".join(f"{p['events']}-event requests {p['req_per_s']:.0f} req/s" for p in phases),
            "",
        ]
        args.out.mkdir(parents=True, exist_ok=True)
        for name, path in sessions.items():
            if not path.is_file():
                raise RuntimeError(f"pyinstrument wrote no session for the {name}")
            render_text(path, args.out / f"profile-{name}.txt")
            report += profile_section(name, path, args.top)
        (args.out / "profile.md").write_text("\n".join(report))
        say(f"wrote {args.out}/profile.md and profile-gateway.txt, profile-worker.txt")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
