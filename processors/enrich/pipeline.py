"""``enrich()``: every enabled enricher over the event, then the source's privacy options.

An enricher that raises does not stop the event: its field stays empty and the result carries
a warning ``"<enricher>: <ExceptionType>: <message>"``. Only a privacy option that cannot be
honoured fails the event (:class:`~processors.errors.InvalidEvent`), since going on would
store what the source asked not to.
"""

from __future__ import annotations

from processors.enrich.context import EnrichContext
from processors.enrich.privacy import privacy_update
from schemas import RawEvent
from schemas.enrichment import EnrichedEvent, Enrichment

__all__ = ["enrich", "enrichment_of"]

_MAX_WARNING = 300


def enrich(event: RawEvent, context: EnrichContext) -> EnrichedEvent:
    """The event as it may be kept, with what the enrichers found about it."""
    values, warnings = _run_enrichers(event, context)
    update, values["ip"] = privacy_update(event, context)
    values["warnings"] = warnings
    return EnrichedEvent.model_validate(
        {**event.__dict__, **update, "enrichment": Enrichment.model_validate(values)}
    )


def enrichment_of(event: RawEvent, context: EnrichContext) -> Enrichment:
    """What the enabled enrichers find, without privacy options (``ip`` stays empty)."""
    values, warnings = _run_enrichers(event, context)
    values["warnings"] = warnings
    return Enrichment.model_validate(values)


def _run_enrichers(
    event: RawEvent, context: EnrichContext
) -> tuple[dict[str, object], tuple[str, ...]]:
    disabled = context.options.disabled
    values: dict[str, object] = {}
    warnings: list[str] = []
    for name, enricher in context.enrichers:
        if name in disabled:
            continue
        try:
            values[name] = enricher(event, context)
        except Exception as exc:  # an enricher's failure must not stop the event
            warnings.append(f"{name}: {type(exc).__name__}: {exc}"[:_MAX_WARNING])
    return values, tuple(warnings)
