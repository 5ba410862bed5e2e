"""The machine a benchmark ran on, and how busy it was (others may share it)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["describe_machine", "load_average"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _command_output(*argv: str) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def describe_machine(repo: Path, kafka_version: str, postgres_bin: Path | None) -> dict[str, Any]:
    postgres = (
        _command_output(str(postgres_bin / "postgres"), "--version") if postgres_bin else None
    )
    commit = _command_output("git", "-C", str(repo), "rev-parse", "--short", "HEAD")
    dirty = _command_output("git", "-C", str(repo), "status", "--porcelain")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "os": _os_name(),
        "python": platform.python_version(),
        "kafka": kafka_version,
        "postgresql": postgres,
        "java": _command_output("java", "-version"),
        "go": _command_output("go", "version"),
        "git_commit": (commit or "unknown") + (" (work tree modified)" if dirty else ""),
        "load_average_at_start": load_average(),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()
