"""Building and running ``bench/loadgen`` (Go, standard library only), the load generator.

The binary is built once into ``bench/.tools/`` and rebuilt when its source changes. When
no Go toolchain is found, Debian's ``golang-go`` is installed (as root), as the local stack
does for Java and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["LoadgenError", "build_loadgen", "run_loadgen"]

_SOURCE = Path(__file__).resolve().parent / "loadgen"
_TOOLS = Path(__file__).resolve().parent / ".tools"
_BINARY = _TOOLS / "loadgen"


class LoadgenError(RuntimeError):
    pass


def _find_go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _install_go(say: Callable[[str], None]) -> str:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LoadgenError(
            "the load generator needs Go (>= 1.19): install Debian package golang-go "
            "or a Go toolchain, then run again"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say("no Go toolchain found; installing Debian package golang-go (apt-get)...")
    for args in (["update"], ["install", "-y", "--no-install-recommends", "golang-go"]):
        done = subprocess.run(["apt-get", *args], env=env, capture_output=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise LoadgenError(f"apt-get {' '.join(args)} failed:\n{tail}")
    go = _find_go()
    if go is None:
        raise LoadgenError("golang-go was installed but `go` is still not on PATH")
    return go


def _stale() -> bool:
    if not _BINARY.is_file():
        return True
    built = _BINARY.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _SOURCE.iterdir() if p.is_file())


def build_loadgen(say: Callable[[str], None]) -> Path:
    """The load generator's binary, built from ``bench/loadgen`` when missing or stale."""
    if not _stale():
        return _BINARY
    go = _find_go() or _install_go(say)
    say(f"building the load generator (bench/loadgen, Go standard library) with {go}...")
    _TOOLS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    done = subprocess.run(
        [go, "build", "-o", str(_BINARY), "."],
        cwd=_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise LoadgenError(f"go build of bench/loadgen failed:\n{done.stdout}{done.stderr}")
    return _BINARY


def run_loadgen(
    binary: Path,
    url: str,
    bodies: Path,
    *,
    duration: float,
    rate: float = 0.0,
    connections: int = 64,
) -> dict[str, Any]:
    """One load run from a separate process; its JSON summary.

    ``rate`` > 0 is an open-loop run at that many requests/s; 0 is closed loop with
    ``connections`` clients. GOMAXPROCS=1 keeps the generator to one core's worth of CPU.
    """
    argv = [
        str(binary),
        "-url",
        url,
        "-bodies",
        str(bodies),
        "-rate",
        str(rate),
        "-connections",
        str(connections),
        "-duration",
        f"{duration}s",
    ]
    env = dict(os.environ, GOMAXPROCS="1")
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=duration + 90, check=False
    )
    if done.returncode != 0:
        raise LoadgenError(f"loadgen exited {done.returncode}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
