"""Hypothesis strategies from the JSON Schemas pydantic writes for tool inputs.

hypothesis-jsonschema (0.23) no longer works with current hypothesis releases, and tool
schemas use a small part of JSON Schema, so this covers that part and refuses anything else:
a keyword it does not know fails the test instead of being fuzzed less than it looks.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Keywords that only describe, never constrain.
DESCRIPTIVE = {"title", "description", "default", "examples"}
KNOWN = DESCRIPTIVE | {
    "type", "enum", "const", "anyOf", "$ref", "$defs", "properties", "required", "additionalProperties",
    "items", "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum",
}  # fmt: skip


def from_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values that validate against ``schema`` (``$ref``s resolved in ``defs`` / ``$defs``)."""
    defs = {**(defs or {}), **schema.get("$defs", {})}
    unknown = set(schema) - KNOWN
    if unknown:
        raise ValueError(
            f"schema keywords {sorted(unknown)} are not supported: extend tests/schema_strategy.py"
        )
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs) for s in schema["anyOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, defs) for k in kind])
    if kind == "object":
        return _object(schema, defs)
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {}), defs),
            min_size=schema.get("minItems", 0),
            max_size=schema.get("maxItems", 5),
        )
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 80))
    if kind == "integer":
        # Unbounded where the schema is: JSON integers have no size limit, and a huge one is
        # exactly what overflows a 64-bit column.
        low = schema.get("minimum", schema["exclusiveMinimum"] + 1 if "exclusiveMinimum" in schema else None)
        high = schema.get("maximum", schema["exclusiveMaximum"] - 1 if "exclusiveMaximum" in schema else None)
        return st.integers(min_value=low, max_value=high)
    if kind == "number":
        return st.floats(
            min_value=schema.get("minimum", schema.get("exclusiveMinimum")),
            max_value=schema.get("maximum", schema.get("exclusiveMaximum")),
            exclude_min="exclusiveMinimum" in schema,
            exclude_max="exclusiveMaximum" in schema,
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind is None and not set(schema) - DESCRIPTIVE - {"$defs"}:  # {}: anything JSON
        return st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    raise ValueError(f"schema type {kind!r} is not supported: extend tests/schema_strategy.py")


def _object(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    fixed = st.fixed_dictionaries(
        {k: from_schema(v, defs) for k, v in properties.items() if k in required},
        optional={k: from_schema(v, defs) for k, v in properties.items() if k not in required},
    )
    extra = schema.get("additionalProperties")
    if not properties and isinstance(extra, dict):  # a mapping such as env or params
        return st.dictionaries(st.text(max_size=12), from_schema(extra, defs), max_size=4)
    return fixed
