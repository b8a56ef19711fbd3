"""The reviewer's verdict form, built from a kind's verdict schema, and read back from it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

PREFIX = "v:"
"""Form names are PREFIX + the field's path in the verdict: v:items.0.refund_amount."""
LONG_TEXT = 200
"""Strings that may be longer than this get a text area."""


@dataclass
class FormField:
    """One input of the form: where it goes in the verdict and how it is shown."""

    path: str
    label: str
    widget: str  # select | text | textarea | number | integer | date | list | json
    value: str
    options: list[str] = field(default_factory=list)
    help: str | None = None
    group: str | None = None  # a heading shown before this field
    error: str | None = None
    nullable: bool = False  # left empty, the field is null

    @property
    def name(self) -> str:
        return PREFIX + self.path


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema node behind a $ref or an `X | None`, and whether null is allowed."""
    nullable = False
    if "anyOf" in node:
        options = [n for n in node["anyOf"] if n.get("type") != "null"]
        nullable = len(options) < len(node["anyOf"])
        if len(options) == 1:
            node = {**{k: v for k, v in node.items() if k != "anyOf"}, **options[0]}
    if "$ref" in node:
        node = {
            **defs[node["$ref"].rsplit("/", 1)[1]],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return node, nullable


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _widget(node: dict[str, Any], nullable: bool) -> tuple[str, list[str]]:
    if "enum" in node:
        return "select", ([""] if nullable else []) + [str(v) for v in node["enum"]]
    kind = node.get("type")
    if kind == "boolean":
        return "select", ([""] if nullable else []) + ["true", "false"]
    if kind == "integer":
        return "integer", []
    if kind == "number":
        return "number", []
    if kind == "string":
        if node.get("format") == "date":
            return "date", []
        return ("textarea" if node.get("maxLength", 0) > LONG_TEXT else "text"), []
    if kind == "array" and node.get("items", {}).get("type") in ("string", "integer", "number"):
        return "list", []
    return "json", []


def build_form(
    model: type[BaseModel], values: Mapping[str, Any], *, skip: frozenset[str] = frozenset()
) -> list[FormField]:
    """The inputs for a verdict of `model`, filled with `values` (a verdict, or what the
    reviewer sent); fields in `skip` are left out."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    out: list[FormField] = []

    def walk(
        props: dict[str, Any], data: Mapping[str, Any], prefix: str, group: str | None
    ) -> None:
        for name, raw in props.items():
            if not prefix and name in skip:
                continue
            node, nullable = _resolve(raw, defs)
            path, value = prefix + name, data.get(name)
            title = node.get("title") or raw.get("title") or name
            if node.get("type") == "array" and "$ref" in node.get("items", {}):
                item, _ = _resolve(node["items"], defs)
                for i, element in enumerate(value if isinstance(value, list) else []):
                    element = element if isinstance(element, dict) else {}
                    sku = element.get("sku") or element.get("location_id")
                    heading = f"{title} {i + 1}" + (f" ({sku})" if sku else "")
                    walk(item.get("properties", {}), element, f"{path}.{i}.", heading)
                continue
            if node.get("type") == "object" and "properties" in node:
                walk(
                    node["properties"], value if isinstance(value, dict) else {}, path + ".", title
                )
                continue
            widget, options = _widget(node, nullable)
            if widget == "list" and isinstance(value, list):
                text = ", ".join(_scalar(v) for v in value)
            elif widget == "json" and not isinstance(value, str):
                text = json.dumps(value, ensure_ascii=False)
            else:
                text = _scalar(value)
            help_text = raw.get("description") or node.get("description")
            out.append(
                FormField(path, title, widget, text, options, help_text, group, nullable=nullable)
            )
            group = None

    walk(schema.get("properties", {}), values, "", None)
    return out


def _read(f: FormField, sent: str) -> Any:
    """A form value as the verdict's JSON value; text that does not parse is kept as sent,
    so validation names the field and the form shows it back."""
    if f.widget == "list":
        return [v.strip() for v in sent.split(",") if v.strip()]
    if sent.strip() == "" and f.nullable:
        return None
    if f.widget == "select" and set(f.options) >= {"true", "false"} and sent in ("true", "false"):
        return sent == "true"
    try:
        if f.widget == "integer":
            return int(sent)
        if f.widget == "number":
            return float(sent)
        if f.widget == "json":
            return json.loads(sent)
    except ValueError:
        return sent
    return sent


def read_form(
    model: type[BaseModel],
    form: Mapping[str, str],
    proposal: Mapping[str, Any],
    *,
    skip: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The verdict the reviewer's form describes (its shape is the proposal's: the same
    number of items); fields in `skip` are left out."""
    verdict: dict[str, Any] = {}
    for f in build_form(model, proposal, skip=skip):
        value = _read(f, form.get(f.name, ""))
        node: Any = verdict
        parts = f.path.split(".")
        for here, nxt in zip(parts, parts[1:], strict=False):
            if isinstance(node, list):
                while len(node) <= int(here):
                    node.append([] if nxt.isdigit() else {})
                node = node[int(here)]
            else:
                node = node.setdefault(here, [] if nxt.isdigit() else {})
        if isinstance(node, list):
            node.append(value)
        else:
            node[parts[-1]] = value
    return verdict
