"""``trackflow rules ...``: workflow rules as records on the config topic.

``apply FILE`` validates the whole file first (YAML or JSON; every problem names the rule, the
field and what is valid) and publishes nothing when any rule is invalid; then it publishes each
new or changed rule under key ``rule:<id>``. Running workers follow the topic and use the
rules within seconds; the ``config_mirror`` agent copies them into the ``rules`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from aiokafka import AIOKafkaProducer

from processors.workflow import RuleFileError, RuleFormat, load_rules
from schemas.config import config_key
from schemas.rules import Rule, RuleRecord
from schemas.topics import CONFIG
from trackflow.config_topic import read_config_records

__all__ = [
    "Applied",
    "RuleCommandError",
    "apply_rules",
    "list_rules",
    "read_rule_file",
    "rules",
    "set_rule_enabled",
]


class RuleCommandError(Exception):
    pass


@dataclass(frozen=True)
class Applied:
    rule: Rule
    change: str  # created, updated, unchanged


def read_rule_file(path: Path) -> list[Rule]:
    """Every rule of the file, or RuleCommandError listing every problem."""
    formats: dict[str, RuleFormat] = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
    file_format = formats.get(path.suffix.lower())
    if file_format is None:
        raise RuleCommandError(f"{path}: a rule file ends in .yaml, .yml or .json")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RuleCommandError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return load_rules(text, file_format)
    except RuleFileError as exc:
        raise RuleCommandError(f"{path}: {exc}\nnothing was applied") from None


async def list_rules(bootstrap: str) -> list[RuleRecord]:
    records = await read_config_records(bootstrap)
    return sorted((r for r in records if isinstance(r, RuleRecord)), key=lambda r: r.rule.id)


async def apply_rules(bootstrap: str, new: Sequence[Rule]) -> list[Applied]:
    """Publish the new and changed rules (all validated already); report each one."""
    current = {r.rule.id: r.rule for r in await list_rules(bootstrap)}
    applied = [Applied(rule, _change(current.get(rule.id), rule)) for rule in new]
    now = datetime.now(UTC)
    records = [RuleRecord(rule=a.rule, updated_at=now) for a in applied if a.change != "unchanged"]
    await _publish(bootstrap, records)
    return applied


def _change(before: Rule | None, after: Rule) -> str:
    if before is None:
        return "created"
    return "unchanged" if before == after else "updated"


async def set_rule_enabled(bootstrap: str, rule_id: str, enabled: bool) -> RuleRecord:
    current = {r.rule.id: r for r in await list_rules(bootstrap)}
    if rule_id not in current:
        known = ", ".join(current) or "none"
        raise RuleCommandError(f"no rule with id {rule_id!r} (known: {known})")
    rule = current[rule_id].rule.model_copy(update={"enabled": enabled})
    record = RuleRecord(rule=rule, updated_at=datetime.now(UTC))
    await _publish(bootstrap, [record])
    return record


async def _publish(bootstrap: str, records: Sequence[RuleRecord]) -> None:
    if not records:
        return
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        pending = [
            await producer.send(CONFIG, key=config_key(r), value=r.model_dump_json().encode())
            for r in records
        ]
        for future in pending:
            await future
    finally:
        await producer.stop()


# -- the commands ----------------------------------------------------------------------------


def _bootstrap(kafka_bootstrap: str | None) -> str:
    from trackflow.cli import _settings

    return _settings(kafka_bootstrap=kafka_bootstrap).kafka_bootstrap


def _call(coro: Any, bootstrap: str) -> Any:
    from trackflow.cli import Failure, _run

    try:
        return _run(coro, bootstrap)
    except RuleCommandError as exc:
        raise Failure(str(exc)) from None


_kafka = click.option(
    "--kafka", "kafka_bootstrap", help="Kafka bootstrap servers [TRACKFLOW_KAFKA_BOOTSTRAP]"
)


@click.group()
def rules() -> None:
    """Apply, list, enable and disable workflow rules."""


@rules.command("apply")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_kafka
def rules_apply(file: Path, kafka_bootstrap: str | None) -> None:
    """Validate every rule of FILE (YAML or JSON), then publish the new and changed ones."""
    from trackflow.cli import Failure

    try:
        new = read_rule_file(file)
    except RuleCommandError as exc:
        raise Failure(str(exc)) from None
    bootstrap = _bootstrap(kafka_bootstrap)
    for a in _call(apply_rules(bootstrap, new), bootstrap):
        click.echo(f"{a.change:<10} {a.rule.id}")


@rules.command("list")
@_kafka
def rules_list(kafka_bootstrap: str | None) -> None:
    """List rules in evaluation order of priority."""
    bootstrap = _bootstrap(kafka_bootstrap)
    found = _call(list_rules(bootstrap), bootstrap)
    found.sort(key=lambda r: (-r.rule.priority, r.rule.id))
    click.echo(f"{'ID':<32} {'ENABLED':<8} {'PRIORITY':>8}  {'ACTIONS':<28} NAME")
    for record in found:
        rule = record.rule
        enabled = "yes" if rule.enabled else "no"
        actions = ",".join(a.action for a in rule.then)
        click.echo(f"{rule.id:<32} {enabled:<8} {rule.priority:>8}  {actions:<28} {rule.name}")


@rules.command("disable")
@click.argument("rule_id")
@_kafka
def rules_disable(rule_id: str, kafka_bootstrap: str | None) -> None:
    """Disable a rule: running workers stop using it within seconds."""
    _set_enabled(rule_id, False, kafka_bootstrap)


@rules.command("enable")
@click.argument("rule_id")
@_kafka
def rules_enable(rule_id: str, kafka_bootstrap: str | None) -> None:
    """Enable a disabled rule again."""
    _set_enabled(rule_id, True, kafka_bootstrap)


def _set_enabled(rule_id: str, enabled: bool, kafka_bootstrap: str | None) -> None:
    bootstrap = _bootstrap(kafka_bootstrap)
    record = _call(set_rule_enabled(bootstrap, rule_id, enabled), bootstrap)
    click.echo(f"{record.rule.id} {'enabled' if record.rule.enabled else 'disabled'}")
