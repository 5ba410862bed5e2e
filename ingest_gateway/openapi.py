"""The OpenAPI document: request bodies and error responses of routes that read the raw body.

The ingest routes read and parse their bodies themselves (size limits, gzip, ``text/plain``,
one bad item not sinking a batch), so FastAPI cannot see their models; each route names its
body model here and :func:`install_schemas` adds the models to ``components.schemas``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

__all__ = ["ERRORS", "ErrorBody", "body", "install_schemas", "query"]


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str = Field(description="what is wrong, naming the field")
    details: list[dict[str, Any]] = Field(
        default_factory=list, description="each invalid field, or each rejected item by index"
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


_WHEN = {
    400: "malformed JSON or gzip, a missing required field, or no item of a batch was valid",
    401: "unknown source or write key",
    403: "the source is disabled, or the Origin is not among its allowed origins",
    408: "the body did not arrive in time",
    413: "the body (or a Segment message) is over the limit",
    415: "a content type or content encoding that is not accepted",
    422: "fails validation; error.details lists each field (Tracardi and collect routes)",
    429: "the source's rate limit is exceeded; Retry-After says when to retry",
    503: "Kafka did not acknowledge in time; Retry-After says when to retry",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _WHEN.items()
}


def body(model: type[BaseModel], description: str, *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is ``model``."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": required,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        },
    }


def query(*names: tuple[str, bool, str]) -> dict[str, Any]:
    """``openapi_extra`` for string query parameters: (name, required, description)."""
    return {
        "parameters": [
            {
                "name": n,
                "in": "query",
                "required": r,
                "description": d,
                "schema": {"type": "string"},
            }
            for n, r, d in names
        ]
    }


def install_schemas(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Add each body model (and the models it uses) to the document's components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
