"""Reading a reply: instructor parses each tool call; the gate in front of it decides which."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from service.llm.parse import InvalidReply, parse_reply, request_options


class Pick(BaseModel):
    """Pick one."""

    choice: Literal["a", "b"]


def reply(*calls: tuple[str, str], content: str | None = None) -> ChatCompletion:
    tool_calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return ChatCompletion.model_validate(
        {
            "id": "r",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        }
    )


def test_the_offered_function_is_instructors_definition() -> None:
    tool = request_options("tools", Pick)["tools"][0]["function"]
    assert tool["name"] == "Pick" and tool["description"] == "Pick one."
    assert tool["parameters"]["properties"]["choice"]["enum"] == ["a", "b"]
    assert request_options("tools", Pick)["tool_choice"]["function"]["name"] == "Pick"


def test_every_call_is_parsed_on_its_own_when_many_are_allowed() -> None:
    got = parse_reply(
        reply(("Pick", '{"choice": "a"}'), ("Pick", '{"choice": "b"}')),
        mode="tools",
        response_model=Pick,
        many=True,
    )
    assert [p.choice for p in got] == ["a", "b"]  # type: ignore[attr-defined]
    assert all(isinstance(p, Pick) for p in got)


@pytest.mark.parametrize(
    ("calls", "problem"),
    [
        ((("Pick", '{"choice": "a"}'), ("Pick", '{"choice": "b"}')), "2 tool calls"),
        ((("Other", '{"choice": "a"}'),), "not the offered 'Pick'"),
        ((("Pick", '{"choice": "c-secret customer text"}'),), "choice: literal_error"),
        ((("Pick", '{"choice": "a"'),), "json_invalid"),
    ],
    ids=["two-calls", "unoffered-name", "invalid-value", "broken-json"],
)
def test_invalid_calls_name_the_problem_never_the_value(
    calls: tuple[tuple[str, str], ...], problem: str
) -> None:
    with pytest.raises(InvalidReply) as err:
        parse_reply(reply(*calls), mode="tools", response_model=Pick)
    assert problem in str(err.value)
    assert "secret" not in str(err.value) and "input_value" not in str(err.value)
