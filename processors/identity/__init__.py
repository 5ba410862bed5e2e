"""The pure core of identification, sessions and profile merging. No Kafka, Faust, psycopg
or HTTP here: the agents read state, call these functions, and write what they return.

* identify (consumes ``events.raw``, keyed by profile id): ``identify(event, state, config)``
  resolves the canonical profile id, decides the session, extracts identifiers
  (``extract``, ``normalise``) and returns the claims to publish, keyed by identifier.
* merge (consumes ``identity.claims``, keyed by identifier, so one writer decides per
  identifier): ``plan_merge(claim, holders, config)`` -> ``MergePlan`` | ``IdentityConflict``
  | ``NoMerge``; ``apply_merge_plan(plan, profiles, policy, config)`` -> what to write, with
  the PostgreSQL contract in ``processors.identity.apply``.
* ``resolve`` keeps alias mappings acyclic and compressed; ``policy`` combines traits;
  ``blocked_conflicts`` turns placeholder values into conflict records.
"""

from processors.identity.apply import (
    MergeApplication,
    apply_merge_plan,
    audit_id,
    profile_from_claimant,
)
from processors.identity.blocked import blocked_conflicts
from processors.identity.config import (
    DEFAULT_BLOCKED_VALUES,
    DEFAULT_SESSION_TIMEOUT,
    IdentifierKind,
    IdentifyConfig,
    MergeConfig,
    TraitField,
)
from processors.identity.errors import (
    BlockedIdentifier,
    IdentityError,
    InvalidIdentifier,
    InvalidMerge,
    MergeCycleError,
)
from processors.identity.extract import (
    ExtractedIdentity,
    Rejection,
    build_claims,
    extract_identity,
    read_path,
)
from processors.identity.identify import MAX_CLAIMED, Identification, apply_alias, identify
from processors.identity.merge import (
    claimant_from_claim,
    claimant_of,
    identity_conflict,
    merge_profiles,
    merge_reason,
    plan_merge,
    rank_key,
    user_id_conflict,
)
from processors.identity.normalise import (
    hash_identifier_value,
    identifier_text,
    is_blocked,
    normalise_email,
    normalise_identifier,
    normalise_phone,
    normalise_text,
)
from processors.identity.policy import (
    FieldPolicy,
    MergedTraits,
    TraitPolicy,
    TraitValue,
    json_text,
    merge_trait,
    merge_traits,
)
from processors.identity.resolve import add_alias, compress, resolve
from processors.identity.sessions import (
    SessionChange,
    SessionDecision,
    decide_session,
    derived_session_id,
)

__all__ = [
    "DEFAULT_BLOCKED_VALUES",
    "DEFAULT_SESSION_TIMEOUT",
    "MAX_CLAIMED",
    "BlockedIdentifier",
    "ExtractedIdentity",
    "FieldPolicy",
    "Identification",
    "IdentifierKind",
    "IdentifyConfig",
    "IdentityError",
    "InvalidIdentifier",
    "InvalidMerge",
    "MergeApplication",
    "MergeConfig",
    "MergeCycleError",
    "MergedTraits",
    "Rejection",
    "SessionChange",
    "SessionDecision",
    "TraitField",
    "TraitPolicy",
    "TraitValue",
    "add_alias",
    "apply_alias",
    "apply_merge_plan",
    "audit_id",
    "blocked_conflicts",
    "build_claims",
    "claimant_from_claim",
    "claimant_of",
    "compress",
    "decide_session",
    "derived_session_id",
    "extract_identity",
    "hash_identifier_value",
    "identifier_text",
    "identify",
    "identity_conflict",
    "is_blocked",
    "json_text",
    "merge_profiles",
    "merge_reason",
    "merge_trait",
    "merge_traits",
    "normalise_email",
    "normalise_identifier",
    "normalise_phone",
    "normalise_text",
    "plan_merge",
    "profile_from_claimant",
    "rank_key",
    "read_path",
    "resolve",
    "user_id_conflict",
]
