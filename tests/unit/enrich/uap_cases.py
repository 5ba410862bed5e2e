"""uap-core's test cases (vendored in ``tests/data/uap-core``), loaded fast.

The YAML files are ~5.6 MB; parsing them takes seconds even with libyaml, so their cases are
kept pre-parsed in ``cases.json.gz`` together with each YAML file's SHA-256. Loading checks the
hashes: after changing a YAML file, regenerate with

    .venv/bin/python -m tests.unit.enrich.uap_cases
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

__all__ = ["CORE", "FILES", "Case", "Kind", "load_cases"]

CORE = Path(__file__).resolve().parents[2] / "data" / "uap-core"
CASES = CORE / "cases.json.gz"
Kind = Literal["user_agent", "os", "device"]
FILES: dict[str, Kind] = {
    "tests/test_ua.yaml": "user_agent",
    "test_resources/firefox_user_agent_strings.yaml": "user_agent",
    "test_resources/pgts_browser_list.yaml": "user_agent",
    "test_resources/opera_mini_user_agent_strings.yaml": "user_agent",
    "test_resources/podcasting_user_agent_strings.yaml": "user_agent",
    "tests/test_os.yaml": "os",
    "test_resources/additional_os_tests.yaml": "os",
    "tests/test_device.yaml": "device",
}
Case = dict[str, Any]  # user_agent_string plus the expected fields, as in the YAML


def load_cases() -> dict[str, list[Case]]:
    """Each vendored file's cases; fails when a YAML file changed since ``cases.json.gz``."""
    with gzip.open(CASES, "rt", encoding="utf-8") as handle:
        stored = json.load(handle)
    stale = [name for name in FILES if stored["sha256"].get(name) != _sha256(name)]
    if stale:
        raise AssertionError(
            f"{', '.join(stale)} changed since {CASES.name} was built; "
            "run: .venv/bin/python -m tests.unit.enrich.uap_cases"
        )
    return {name: stored["cases"][name] for name in FILES}


def _sha256(name: str) -> str:
    return hashlib.sha256((CORE / name).read_bytes()).hexdigest()


def build() -> None:
    import yaml  # only needed to rebuild

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    cases: dict[str, list[Case]] = {}
    for name in FILES:
        with (CORE / name).open("rb") as handle:
            cases[name] = yaml.load(handle, Loader=loader)["test_cases"]
    payload = {"sha256": {name: _sha256(name) for name in FILES}, "cases": cases}
    with gzip.GzipFile(CASES, "wb", mtime=0) as raw:
        raw.write(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode())
    print(f"wrote {CASES} ({sum(map(len, cases.values()))} cases)")


if __name__ == "__main__":
    build()
