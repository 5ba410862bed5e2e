"""The identity core's public surface and its purity."""

from __future__ import annotations

import ast
from pathlib import Path

import processors.identity as identity
import schemas.identity as identity_schemas

PACKAGE = Path(identity.__file__).parent
FORBIDDEN = ("aiokafka", "faust", "psycopg", "httpx", "requests", "fastapi", "uvicorn")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_core_does_no_io() -> None:
    for path in [*PACKAGE.glob("*.py"), Path(identity_schemas.__file__)]:
        bad = {name for name in _imports(path) if name.split(".")[0] in FORBIDDEN}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_every_module_declares_what_it_exports() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.name == "__init__.py":
            continue
        module = __import__(f"processors.identity.{path.stem}", fromlist=["__all__"])
        assert module.__all__ == sorted(module.__all__, key=_ruff_order), path.name
        for name in module.__all__:
            assert hasattr(module, name), f"{path.name} exports missing {name}"


def _ruff_order(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_the_package_exports_pinned_names() -> None:
    assert set(identity.__all__) == {
        "DEFAULT_BLOCKED_VALUES", "DEFAULT_SESSION_TIMEOUT", "MAX_CLAIMED",
        "BlockedIdentifier", "ExtractedIdentity", "FieldPolicy", "Identification",
        "IdentifierKind", "IdentifyConfig", "IdentityError", "InvalidIdentifier",
        "InvalidMerge", "MergeApplication", "MergeConfig", "MergeCycleError", "MergedTraits",
        "Rejection", "SessionChange", "SessionDecision", "TraitField", "TraitPolicy",
        "TraitValue", "add_alias", "apply_alias", "apply_merge_plan", "audit_id",
        "blocked_conflicts",
        "build_claims", "claimant_from_claim", "claimant_of", "compress", "decide_session",
        "derived_session_id", "extract_identity", "hash_identifier_value", "identifier_text",
        "identify", "identity_conflict", "is_blocked", "json_text", "merge_profiles",
        "merge_reason", "merge_trait", "merge_traits", "normalise_email",
        "normalise_identifier", "normalise_phone", "normalise_text", "plan_merge",
        "profile_from_claimant", "rank_key", "read_path", "resolve", "user_id_conflict",
    }  # fmt: skip
    assert all(hasattr(identity, name) for name in identity.__all__)


def test_messages_round_trip_through_json() -> None:
    from tests.unit.identity.factories import claim, plan, profile

    for message in (claim(), plan("p1", "p2"), profile("p1", traits={"a": [1, "x"]})):
        again = type(message).model_validate_json(message.model_dump_json())
        assert again == message
