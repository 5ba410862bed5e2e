"""The workflow stage's pure core: rules (when -> then) evaluated against an event.

    load_rules(text, "yaml")            -> list[Rule]          (or RuleFileError, all problems)
    evaluate(rules, event, profile, session, now=...) -> WorkflowResult
    check_webhook_target(url, resolved_ips, allow_list) -> addresses to connect to
    apply_patch(profile, patch)         -> the profile after a ProfilePatch

No Kafka, Faust, database or HTTP here: the worker's agent feeds events and rules in, and
publishes, delivers and stores what ``evaluate`` plans.
"""

from processors.workflow.actions import WORKFLOW_OPTION, emit_depth, idempotency_key
from processors.workflow.delivery import IDEMPOTENCY_HEADER, is_retriable_status, retry_delay
from processors.workflow.errors import (
    RenderError,
    RuleFileError,
    RuleProblem,
    UnsafeWebhookTarget,
)
from processors.workflow.evaluate import DEFAULT_MAX_EMIT_DEPTH, evaluate, order_rules
from processors.workflow.load import RuleFormat, load_rules
from processors.workflow.patch import apply_patch
from processors.workflow.safety import check_webhook_target, describe_address

__all__ = [
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
