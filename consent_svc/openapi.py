"""What the OpenAPI document says where Litestar cannot infer it from a handler's signature.

- Bodies refuse fields they do not declare (msgspec's `forbid_unknown_fields`): their schemas say
  `additionalProperties: false` (`StrictStructs`, an app plugin). A Struct whose `exactly_one_of` names
  fields of which its `__post_init__` takes exactly one gets a `oneOf` saying so.
- Litestar adds each layer's `security` to the next, so a handler cannot take the /v1 router's bearer key off
  by itself: `documented(security=[])` says the operation takes none.
- A body read as bytes (a signature is checked over them before they are decoded), headers read from the
  request, and a response negotiated between media types are declared here from the msgspec types the code
  decodes or encodes with (`documented(...)`), so the document is the decoder's own word.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from litestar._openapi.schema_generation.plugins import StructSchemaPlugin
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Parameter, RequestBody, Schema

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.typing import FieldDefinition


class StrictStructs(StructSchemaPlugin):
    """Litestar's schema of a msgspec Struct, plus what msgspec enforces and Litestar leaves out:
    `additionalProperties: false` where the Struct forbids unknown fields (msgspec answers them with a
    422), and the constraints of a list's string items (`list[Annotated[str, Meta(pattern=...)]]`)."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if not isinstance(info, msgspec.inspect.StructType):
            return schema
        if info.forbid_unknown_fields:
            schema.additional_properties = False
        exclusive = getattr(field_definition.type_, "exactly_one_of", ())
        if exclusive:  # checked in the Struct's __post_init__, which no schema can see
            schema.one_of = [
                Schema(
                    required=[name],
                    properties={
                        other: Schema(type=OpenAPIType.NULL)
                        if other != name
                        else Schema(schema_not=Schema(type=OpenAPIType.NULL))
                        for other in exclusive
                    },
                )
                for name in exclusive
            ]
        for field in info.fields:
            item = _string_items(field.type)
            if item is None:
                continue
            for array in _arrays((schema.properties or {}).get(field.encode_name)):
                array.items.min_length = item.min_length  # type: ignore[union-attr]
                array.items.max_length = item.max_length  # type: ignore[union-attr]
                array.items.pattern = item.pattern  # type: ignore[union-attr]
        return schema


def _string_items(type_: msgspec.inspect.Type) -> msgspec.inspect.StrType | None:
    """The constrained string type of a list's items (the list possibly optional), if that is what it is."""
    if isinstance(type_, msgspec.inspect.Metadata):
        type_ = type_.type
    if isinstance(type_, msgspec.inspect.UnionType):
        lists = [t for t in type_.types if isinstance(t, msgspec.inspect.ListType)]
        type_ = lists[0] if len(lists) == 1 else type_
    if not isinstance(type_, msgspec.inspect.ListType):
        return None
    item = type_.item_type.type if isinstance(type_.item_type, msgspec.inspect.Metadata) else type_.item_type
    constrained = isinstance(item, msgspec.inspect.StrType) and (
        item.min_length is not None or item.max_length is not None or item.pattern is not None
    )
    return item if constrained else None


def _arrays(schema: Any) -> list[Any]:
    """The array schemas with string items in a property's schema (itself, or the branches of its oneOf)."""
    candidates = [schema, *(getattr(schema, "one_of", None) or [])]
    return [
        s
        for s in candidates
        if getattr(s, "items", None) is not None and getattr(s.items, "type", None) == OpenAPIType.STRING
    ]


def inline_schema(type_: Any, **extra: Any) -> dict[str, Any]:
    """The JSON Schema msgspec decodes `type_` by, with its definitions written in place (OpenAPI resolves a
    `#/$defs/...` pointer against the whole document, not against this schema). The wire types are not
    recursive, so this ends."""
    schema = msgspec.json.schema(type_)
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[1]]))
            # The discriminator's mapping points into $defs; `type` is in each branch's properties anyway.
            return {key: resolve(value) for key, value in node.items() if key != "discriminator"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return {**resolve(schema), **extra}


def header(name: str, description: str, schema: dict[str, Any], required: bool = True) -> Parameter:
    return Parameter(
        name=name,
        param_in="header",
        required=required,
        description=description,
        schema=schema,  # type: ignore[arg-type]
    )


def documented(
    *,
    security: list[dict[str, list[str]]] | None = None,
    headers: Sequence[Parameter] = (),
    body: dict[str, Any] | None = None,
    content: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> type[Operation]:
    """An `operation_class` for a route handler that amends the operation Litestar generated:
    `security` replaces the layers' requirements (`[]`: no API key); `headers` are added as parameters;
    `body` is the JSON request body's schema; `content` replaces the media types of the responses it names,
    e.g. {"200": {"text/csv": {"type": "string"}}}."""

    @dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            if security is not None:
                self.security = security  # type: ignore[assignment]
            if headers:
                self.parameters = [*(self.parameters or []), *headers]
            if body is not None:
                self.request_body = RequestBody(
                    content={"application/json": OpenAPIMediaType(schema=body)},  # type: ignore[arg-type]
                    required=True,
                )
            for status, media_types in (content or {}).items():
                response = (self.responses or {})[status]
                response.content = {  # type: ignore[union-attr]
                    media_type: OpenAPIMediaType(schema=schema)  # type: ignore[arg-type]
                    for media_type, schema in media_types.items()
                }

    return Documented
