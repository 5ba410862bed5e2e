"""uap-core's own test cases through trackflow's user-agent parser (every case, one loop per
file, all mismatches reported at once).

The cases are uap-core release v0.16.0 (``tests/data/uap-core/COMMIT``); the rules are those
of ``ua-parser-builtins`` (newer: uap-core 73e7340c, 2026-10). Where the newer rules
deliberately answer differently, the case is listed in KNOWN_DIFFERENCES with the reason;
every listed case must still differ (so the list cannot go stale).
"""

from __future__ import annotations

from functools import cache

import pytest

from processors.enrich import CachedUserAgentParser
from schemas.enrichment import Device
from tests.unit.enrich.uap_cases import FILES, Case, load_cases

KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    (
        "tests/test_ua.yaml",
        "Mozilla/4.0 (SerenityOS; x86_64) LibWeb+LibJS (Not KHTML, nor Gecko) LibWeb",
    ): "newer uap-core has no 'SerenityOS Browser' rule any more (the browser is 'Other'; "
    "SerenityOS is still recognised as the OS)",
    (
        "tests/test_os.yaml",
        "Mozilla/5.0 (X11; Linux aarch64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/52.0.2743.84 Safari/537.36 CrKey/1.22.74257",
    ): "newer uap-core splits the Chromecast OS into 'Chromecast Linux', 'Chromecast "
    "Android', 'Chromecast Fuchsia' and 'Chromecast SmartSpeaker'",
}


@cache
def _parser() -> CachedUserAgentParser:
    return CachedUserAgentParser(maxsize=64)


def _version(case: Case, fields: tuple[str, ...]) -> str | None:
    parts: list[str] = []
    for field in fields:
        if case.get(field) is None:
            break
        parts.append(case[field])
    return ".".join(parts) or None


def _mismatch(kind: str, case: Case, found: Device) -> str | None:
    """What differs between ``found`` and the case's expectation; None when they agree."""
    want: tuple[str | None, ...]
    got: tuple[str | None, ...]
    if kind == "user_agent":
        # uap-core's user-agent cases disagree among themselves on patch_minor
        # (ua-parser/uap-core#562; uap-python does not check it either): compare up to patch,
        # and allow the parsed version to go on with a patch_minor.
        want = (case["family"], _version(case, ("major", "minor", "patch")))
        got_version = found.browser_version
        if got_version and want[1] and got_version.startswith(want[1] + "."):
            got_version = want[1]
        got = (found.browser, got_version)
    elif kind == "os":
        want = (case["family"], _version(case, ("major", "minor", "patch", "patch_minor")))
        got = (found.os, found.os_version)
    else:
        want = (case["family"], case["brand"], case["model"])
        got = (found.device, found.brand, found.model)
    return None if got == want else f"expected {want}, got {got}"


CASES = load_cases()


@pytest.mark.parametrize("name", list(FILES))
def test_every_uap_core_case(name: str) -> None:
    parse = _parser()
    mismatches: list[str] = []
    unexpected_agreement: list[str] = []
    for case in CASES[name]:
        user_agent = case["user_agent_string"]
        problem = _mismatch(FILES[name], case, parse(user_agent))
        known = (name, user_agent) in KNOWN_DIFFERENCES
        if problem is not None and not known:
            mismatches.append(f"{user_agent!r}: {problem}")
        elif problem is None and known:
            unexpected_agreement.append(user_agent)
    assert not mismatches, f"{len(mismatches)} of {len(CASES[name])} cases differ:\n" + "\n".join(
        mismatches[:50]
    )
    assert not unexpected_agreement, (
        f"listed as known differences but agree: {unexpected_agreement}"
    )


def test_case_counts() -> None:
    """The vendored files hold what they held when KNOWN_DIFFERENCES was written."""
    counts = {name: len(cases) for name, cases in CASES.items()}
    assert counts == {
        "tests/test_ua.yaml": 1425,
        "test_resources/firefox_user_agent_strings.yaml": 243,
        "test_resources/pgts_browser_list.yaml": 12500,
        "test_resources/opera_mini_user_agent_strings.yaml": 203,
        "test_resources/podcasting_user_agent_strings.yaml": 144,
        "tests/test_os.yaml": 456,
        "test_resources/additional_os_tests.yaml": 23,
        "tests/test_device.yaml": 16111,
    }
    assert all(name in CASES for name, _ in KNOWN_DIFFERENCES)
