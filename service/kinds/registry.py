"""The registered decision kinds."""

from __future__ import annotations

from typing import Any

from service.kinds.base import DecisionKind
from service.kinds.exceptions import KIND as EXCEPTIONS
from service.kinds.returns import KIND as RETURNS
from service.kinds.routing import KIND as ROUTING

AnyKind = DecisionKind[Any, Any, Any]

KINDS: dict[str, AnyKind] = {k.name: k for k in (RETURNS, EXCEPTIONS, ROUTING)}
