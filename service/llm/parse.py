"""Structured output per mode: what is asked for, how a reply is read, what a re-ask says.

Providers differ: some ignore a forced tool call and answer in `content`, some wrap JSON in
code fences or put prose before it, some call a tool that was never offered or several.
The rules, for every mode:

- `tools`: exactly one call of the offered function. A call of another name, or several
  calls (unless the caller allows many), is invalid output. No call but a JSON payload in
  `content` (fences and prose around it tolerated) is accepted when it validates.
- `json_schema` and `json`: the JSON payload in `content` (fences and prose tolerated);
  a tool call is invalid output (no tool was offered).
- `content` must hold exactly one top-level JSON object; two are ambiguous and invalid.

Anything invalid gets one re-ask. Error texts name the field and the error type, never the
value (model output may quote customer text; the record and the logs must not).

instructor does the schema side: the function definition it generates (`openai_schema`,
built once per response model) is what is offered, and every tool call is parsed and
validated by its `process_response` (Mode.TOOLS). This module stands in front of it for
what instructor does not check — instructor 1.17 reads the first tool call whatever its
name and ignores the others — and reads JSON answers in `content` (fences, prose) itself.
instructor's own logger is kept above DEBUG (`service.llm.client.quiet_sdk_logs`): its debug
lines print raw replies, which can quote customers.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from instructor import Mode
from instructor.processing import openai_schema, process_response
from pydantic import BaseModel, ValidationError

from service.errors import ArbiterError
from service.settings import StructuredMode

FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
MAX_NAME = 64


class InvalidReply(ArbiterError):
    """A reply that is not a valid instance of the response model."""

    def __init__(
        self, problems: list[str], *, hints: list[str] | None = None, truncated: bool = False
    ):
        super().__init__("; ".join(problems))
        self.problems = problems  # for the record and logs: field and error type only
        self.hints = hints or problems  # for the re-ask: what to fix
        self.truncated = truncated


def tool_name(response_model: type[BaseModel]) -> str:
    return response_model.__name__


@lru_cache(maxsize=128)
def _instructor_model(response_model: type[BaseModel]) -> type[BaseModel]:
    """instructor's wrapper of a response model (a subclass), built once per model."""
    wrapped: type[BaseModel] = openai_schema(response_model)
    return wrapped


@lru_cache(maxsize=128)
def _function(response_model: type[BaseModel]) -> dict[str, Any]:
    """instructor's function definition (name, description, parameters), built once per
    model; callers must not mutate it."""
    definition: dict[str, Any] = _instructor_model(response_model).openai_schema  # type: ignore[attr-defined]
    return definition


def _schema(response_model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema asked for in every mode (the function's parameters)."""
    parameters: dict[str, Any] = _function(response_model)["parameters"]
    return parameters


def request_options(mode: StructuredMode, response_model: type[BaseModel]) -> dict[str, Any]:
    """The request fields that ask for `response_model` in `mode`."""
    name = tool_name(response_model)
    if mode == "tools":
        return {
            "tools": [{"type": "function", "function": _function(response_model)}],
            "tool_choice": {"type": "function", "function": {"name": name}},
        }
    if mode == "json_schema":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": _schema(response_model), "strict": False},
            }
        }
    return {"response_format": {"type": "json_object"}}


def messages_for(
    mode: StructuredMode, response_model: type[BaseModel], messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """JSON mode has no schema on the wire, so the prompt carries it (after the static part)."""
    if mode != "json":
        return list(messages)
    schema = json.dumps(_schema(response_model), sort_keys=True)
    note = (
        "Answer with one JSON object, and nothing else, that is valid against this JSON "
        f"schema ({tool_name(response_model)}):\n{schema}"
    )
    return [*messages, {"role": "system", "content": note}]


def describe(exc: ValidationError) -> list[str]:
    """Field and error type of each validation error; never the input value."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        out.append(f"{loc}: {err.get('type', 'invalid')}")
    return out


def describe_for_model(exc: ValidationError) -> list[str]:
    """Field and message, for the re-ask (the model needs to know what to fix)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        out.append(f"{loc}: {err.get('msg', 'invalid')}")
    return out


def _objects(text: str) -> list[str]:
    """Every top-level JSON object in `text`, as text."""
    decoder = json.JSONDecoder()
    found, i = [], 0
    while (i := text.find("{", i)) != -1:
        try:
            _, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        found.append(text[i:end])
        i = end
    return found


def extract_json(text: str) -> str:
    """The one JSON object in a reply's text: bare, in a code fence, or after prose."""
    stripped = text.strip()
    if not stripped:
        raise InvalidReply(["the reply is empty"])
    try:
        json.loads(stripped)
        return stripped
    except json.JSONDecodeError:
        pass
    fenced = [f for f in FENCE.findall(stripped) if f.strip()]
    if len(fenced) > 1:
        raise InvalidReply([f"the reply has {len(fenced)} code blocks; expected one"])
    objects = _objects(fenced[0] if fenced else stripped)
    if not objects:
        raise InvalidReply(["the reply holds no JSON object"])
    if len(objects) > 1:
        raise InvalidReply([f"the reply holds {len(objects)} JSON objects; expected one"])
    return objects[0]


def _validate(response_model: type[BaseModel], payload: str) -> BaseModel:
    """A JSON payload read from `content`, validated as the response model."""
    try:
        return response_model.model_validate_json(payload)
    except ValidationError as exc:
        raise InvalidReply(describe(exc), hints=describe_for_model(exc)) from exc


def _parse_call(
    response: Any, choice: Any, call: Any, response_model: type[BaseModel]
) -> BaseModel:
    """One tool call, parsed and validated by instructor (on a copy of the reply that holds
    only this call, since instructor reads the first)."""
    message = choice.message.model_copy(update={"tool_calls": [call]})
    only = response.model_copy(update={"choices": [choice.model_copy(update={"message": message})]})
    try:
        parsed: BaseModel = process_response(
            only, response_model=_instructor_model(response_model), stream=False, mode=Mode.TOOLS
        )
    except ValidationError as exc:
        raise InvalidReply(describe(exc), hints=describe_for_model(exc)) from exc
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        problem = f"the tool call's arguments are not JSON ({type(exc).__name__})"
        raise InvalidReply([problem]) from exc
    return parsed


def parse_reply(
    response: Any,
    *,
    mode: StructuredMode,
    response_model: type[BaseModel],
    many: bool = False,
) -> list[BaseModel]:
    """The validated instance(s) in a chat completion, or InvalidReply saying why not."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise InvalidReply(["the reply has no choices"])
    choice = choices[0]
    message = choice.message
    if choice.finish_reason == "length":
        raise InvalidReply(["the output was truncated (max tokens)"], truncated=True)
    if getattr(message, "refusal", None):
        raise InvalidReply(["the model refused to answer"])
    name = tool_name(response_model)
    calls = list(message.tool_calls or [])
    if calls:
        if mode != "tools":
            raise InvalidReply([f"a tool was called in {mode} mode, where none was offered"])
        wrong = sorted({str(c.function.name)[:MAX_NAME] for c in calls} - {name})
        if wrong:
            raise InvalidReply([f"called {', '.join(map(repr, wrong))}, not the offered {name!r}"])
        if len(calls) > 1 and not many:
            raise InvalidReply([f"{len(calls)} tool calls; expected exactly one"])
        return [_parse_call(response, choice, c, response_model) for c in calls]
    content = message.content
    if not isinstance(content, str) or not content.strip():
        raise InvalidReply(["the reply has neither a tool call nor content"])
    return [_validate(response_model, extract_json(content))]


def reask_messages(
    response: Any, *, mode: StructuredMode, response_model: type[BaseModel], hints: list[str]
) -> list[dict[str, Any]]:
    """The assistant's reply and one correction, appended to the conversation for the re-ask."""
    name = tool_name(response_model)
    fix = (
        "Your answer was not accepted: "
        + "; ".join(hints)
        + (
            f". Call the function {name} exactly once, with arguments valid against its schema."
            if mode == "tools"
            else ". Answer with exactly one JSON object valid against the schema, nothing else."
        )
    )
    message = response.choices[0].message if getattr(response, "choices", None) else None
    if message is None:
        return [{"role": "user", "content": fix}]
    calls = list(message.tool_calls or [])
    assistant: dict[str, Any] = {"role": "assistant", "content": message.content}
    if calls:
        assistant["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in calls
        ]
        return [
            assistant,
            *({"role": "tool", "tool_call_id": c.id, "content": fix} for c in calls),
        ]
    return [assistant, {"role": "user", "content": fix}]
