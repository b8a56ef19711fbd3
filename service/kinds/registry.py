"""The registered decision kinds: the one registry everything else is handed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.kinds.base import DecisionKind
from service.kinds.exceptions import KIND as EXCEPTIONS
from service.kinds.returns import KIND as RETURNS
from service.kinds.routing import KIND as ROUTING

AnyKind = DecisionKind[Any, Any, Any]
Kinds = Mapping[str, AnyKind]
"""A registry of kinds by name: the app, CLI, engine, spec loader and lint take one."""


def registry_of(*kinds: AnyKind) -> dict[str, AnyKind]:
    """A registry of these kinds (names must be unique)."""
    out: dict[str, AnyKind] = {}
    for k in kinds:
        if k.name in out:
            raise ValueError(f"two kinds are named {k.name!r}")
        out[k.name] = k
    return out


KINDS: dict[str, AnyKind] = registry_of(RETURNS, EXCEPTIONS, ROUTING)
"""The kinds that ship: the default registry."""
