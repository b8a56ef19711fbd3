"""One exception tree; the API maps it to {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any


class ArbiterError(Exception):
    """Root of every error Arbiter raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(ArbiterError):
    """The caller sent a case or parameter that does not validate."""

    status = 422
    code = "validation_error"


class Unauthenticated(ArbiterError):
    status = 401
    code = "unauthenticated"


class Forbidden(ArbiterError):
    status = 403
    code = "forbidden"


class NotFound(ArbiterError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ArbiterError):
    status = 405
    code = "method_not_allowed"


class UnsupportedMediaType(ArbiterError):
    status = 415
    code = "unsupported_media_type"


class Conflict(ArbiterError):
    status = 409
    code = "conflict"


class SpecError(ArbiterError):
    """A spec file that cannot be loaded: bad front matter, parameters or clauses."""

    status = 503
    code = "spec_unavailable"


class Overloaded(ArbiterError):
    """More decisions need the LLM than it can take (overload_mode=reject)."""

    status = 503
    code = "overloaded"


class RateLimited(ArbiterError):
    status = 429
    code = "rate_limited"


class PayloadTooLarge(ArbiterError):
    status = 413
    code = "payload_too_large"


class StoreUnavailable(ArbiterError):
    """The decision log could not be written; the decision is not returned."""

    status = 503
    code = "store_unavailable"


class ChainBroken(ArbiterError):
    status = 500
    code = "chain_broken"


def validation_details(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic errors as [{field, reason}] with dotted field paths; "$" is the whole body."""
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if loc and loc[0] in REQUEST_PARTS:
            loc = loc[1:]  # "order.lines.0", not "body.order.lines.0"; "since", not "query.since"
        out.append(
            {"field": ".".join(map(str, loc)) or "$", "reason": str(err.get("msg", "invalid"))}
        )
    return out


REQUEST_PARTS = ("body", "query", "path", "header", "cookie")
