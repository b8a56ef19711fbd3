"""The sandboxed Jinja2 environment prompts and spec checks render in."""

from __future__ import annotations

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment


def sandbox() -> SandboxedEnvironment:
    """A Jinja2 environment that can't reach Python internals and fails on unknown names."""
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
