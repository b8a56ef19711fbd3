"""One exception tree; the API maps it to {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error JSON: {"error": {"code", "message", "details"}}."""
    return {"error": {"code": code, "message": message, "details": details}}


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
        return error_body(self.code, self.message, self.details)


class BadRequest(ArbiterError):
    """The request cannot be read at all (a body that is not JSON)."""

    status = 400
    code = "bad_request"


class HTTPError(ArbiterError):
    """An HTTP-level refusal from the framework (no such route, method not allowed)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message, headers=headers)
        self.status = status
        self.code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")


class InvalidInput(ArbiterError):
    """The caller sent a case or parameter that does not validate."""

    status = 422
    code = "validation_error"


class VerdictRefused(InvalidInput):
    """A reviewer's verdict that the kind's guard fails or would repair; nothing is logged."""

    code = "verdict_out_of_policy"


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
    """The database could not be read or written (the decision, if any, is not returned)."""

    status = 503
    code = "store_unavailable"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message, details=details, headers={"Retry-After": "1", **(headers or {})})


class ChainBroken(ArbiterError):
    status = 500
    code = "chain_broken"


class LLMError(ArbiterError):
    """A failure at the LLM seam. The engine turns it into a rules fallback, so callers never
    see it; the record keeps its text (no key, no customer text) in `attempts.*.error`."""

    status = 503
    code = "llm_unavailable"

    def __init__(self, message: str, *, model: str, details: Any = None):
        super().__init__(message, details=details)
        self.model = model

    @property
    def brief(self) -> str:
        """The message without any text the provider sent back (which may echo the prompt)."""
        return self.message


class ModelAPIError(LLMError):
    """A call to a model did not produce a response."""


class ModelTimeout(ModelAPIError):
    """The model did not answer within its share of the request deadline."""


class ModelUnreachable(ModelAPIError):
    """The endpoint could not be reached (DNS, refused connection, TLS)."""


class ModelHTTPError(ModelAPIError):
    """The endpoint answered 4xx or 5xx (in the style of pydantic-ai's ModelHTTPError)."""

    def __init__(
        self,
        *,
        status_code: int,
        model: str,
        body: str | None = None,
        retry_after_s: float | None = None,
    ):
        self.status_code = status_code
        self.body_excerpt = body
        self.retry_after_s = retry_after_s
        after = f", retry after {retry_after_s:g}s" if retry_after_s is not None else ""
        self._brief = f"HTTP {status_code} from {model}{after}"
        super().__init__(f"{self._brief}: {body or '(no body)'}", model=model)

    @property
    def brief(self) -> str:
        return self._brief

    @property
    def transient(self) -> bool:
        """Worth retrying the same model: rate limited, overloaded or a server fault."""
        return self.status_code in (408, 409, 429) or self.status_code >= 500


class InvalidOutput(LLMError):
    """The model answered, but not with a valid verdict, even after the one re-ask."""

    def __init__(self, *, model: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{model}: invalid output: {'; '.join(problems)}", model=model)


class ModelNotConfigured(LLMError):
    """A policy names a model alias that the settings do not map to an endpoint."""


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


class LogTampered(ArbiterError):
    """Stored data that no longer matches the hash that binds it (an edit in the database)."""

    status = 500
    code = "log_tampered"
