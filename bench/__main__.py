"""``python -m bench [--smoke] [--out DIR]``: the whole benchmark on its own stack.

Writes ``DIR/latest.json`` and ``DIR/latest.md`` (``smoke.json``/``smoke.md`` with
``--smoke``, so that a smoke run never replaces the last full results). Exits 1 when a
step crashed, 0 otherwise, whether the targets were met or not.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bench.report import evaluate_targets, write_results
from bench.run import FULL, SMOKE, run_benchmark, say

_DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every step at tiny scale (< ~90 s)")
    parser.add_argument("--out", type=Path, default=_DEFAULT_OUT, help="results folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder")
    parser.add_argument(
        "--render", type=Path, metavar="JSON",
        help="only judge the targets again and rewrite the Markdown of an earlier results file",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.render is not None:
        return _render(args.render)
    logging.basicConfig(level=logging.WARNING, format="bench: %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retries while topics settle
    scale = SMOKE if args.smoke else FULL
    say(f"{scale.name} run; results go to {args.out}")
    results = run_benchmark(scale, keep=args.keep)
    results["targets"] = evaluate_targets(results)
    json_path, md_path = write_results(results, args.out, "smoke" if args.smoke else "latest")
    say(f"wrote {json_path} and {md_path}")
    for t in results["targets"]:
        say(f"target {t['status']:>12}: {t['target']} — {t['measured']}")
    if results["errors"]:
        say(
            f"{len(results['errors'])} step(s) failed: "
            + ", ".join(e["step"] for e in results["errors"])
        )
        return 1
    return 0


def _render(path: Path) -> int:
    results = json.loads(path.read_text())
    results["targets"] = evaluate_targets(results)
    json_path, md_path = write_results(results, path.parent, path.stem)
    say(f"rewrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
