"""The public surface is pinned, and the core stays pure (no I/O libraries)."""

from __future__ import annotations

import ast
from pathlib import Path

import processors.workflow as workflow
import schemas.rules as rules

PACKAGE = Path(workflow.__file__).parent
FORBIDDEN = {
    "aiokafka",
    "faust",
    "psycopg",
    "psycopg_pool",
    "httpx",
    "requests",
    "socket",
    "urllib.request",
    "asyncio",
    "fastapi",
    "kafka",
    "subprocess",
}


def test_workflow_public_api() -> None:
    assert sorted(workflow.__all__) == sorted(
        [
            "DEFAULT_MAX_EMIT_DEPTH",
            "IDEMPOTENCY_HEADER",
            "WORKFLOW_OPTION",
            "RenderError",
            "RuleFileError",
            "RuleFormat",
            "RuleProblem",
            "UnsafeWebhookTarget",
            "apply_patch",
            "check_webhook_target",
            "describe_address",
            "emit_depth",
            "evaluate",
            "idempotency_key",
            "is_retriable_status",
            "load_rules",
            "order_rules",
            "retry_delay",
        ]
    )
    assert all(hasattr(workflow, name) for name in workflow.__all__)


def test_rules_schema_public_api() -> None:
    assert all(hasattr(rules, name) for name in rules.__all__)
    for name in (
        "Rule",
        "When",
        "Condition",
        "WorkflowResult",
        "ActionOutcome",
        "ProfilePatch",
        "WebhookCall",
        "EmitEvent",
        "ProduceMessage",
        "PatchProfile",
        "RuleRecord",
    ):
        assert name in rules.__all__
    assert set(rules.ACTION_KINDS) == {
        "tag",
        "untag",
        "set_trait",
        "unset_trait",
        "increment_trait",
        "append_trait",
        "emit_event",
        "webhook",
        "produce",
        "stop",
    }


def test_every_module_declares_all() -> None:
    for path in [*PACKAGE.glob("*.py"), *Path(rules.__file__).parent.glob("*.py")]:
        tree = ast.parse(path.read_text())
        names = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        assert "__all__" in names, path


def test_the_core_imports_no_io_library() -> None:
    for path in [*PACKAGE.glob("*.py"), *Path(rules.__file__).parent.glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported = {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported = {node.module or ""}
            else:
                continue
            bad = {m for m in imported for f in FORBIDDEN if m == f or m.startswith(f + ".")}
            assert not bad, f"{path.name} imports {bad}"
