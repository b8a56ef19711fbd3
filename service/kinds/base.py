"""The decision-kind contract: Case, Verdict, Parameters, precheck, guard, fallback."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from types import UnionType
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    RootModel,
    Strict,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from service.limits import year_in_range

CENT = Decimal("0.01")


@dataclass(frozen=True)
class FieldTag:
    """Metadata a kind puts on a Case or Verdict field (`Annotated[str, PERSONAL]`).

    Everything that treats fields differently reads these tags, never a list of names:
    masking on read (personal), the prompt-injection screen (untrusted), the money columns
    of exports, replay and pages (money). The JSON schema shows each tag as `x-<name>`.
    """

    name: str

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out[f"x-{self.name}"] = True
        return out


PERSONAL = FieldTag("personal")
"""Personal data, or free text that may quote it: masked for readers without `audit:pii`."""
UNTRUSTED = FieldTag("untrusted")
"""Text written by outsiders (customers, their addresses, validators echoing them): data,
never instructions; screened for prompt injection."""
MONEY = FieldTag("money")
"""An amount of money (exports, replay and pages show it as a money column)."""


PLAIN_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
"""Money as text: ASCII digits, at most two decimals; no sign, exponent, "_" or spaces."""


def _plain_money(value: Any) -> Any:
    if isinstance(value, str):
        if not PLAIN_DECIMAL.fullmatch(value):
            raise ValueError(
                'money must be a plain decimal string such as "129.00": digits 0-9, '
                "at most two decimals, no sign, exponent, separator or space"
            )
        return value
    if isinstance(value, Decimal) and value.is_finite():
        return value  # computed in Python (fallbacks, repairs): bounded by the Field below
    raise ValueError('money must be a decimal string such as "129.00", not a JSON number')


def cents(value: Decimal) -> Decimal:
    """Round a money amount to the cent, half up (never a negative zero)."""
    rounded = value.quantize(CENT, rounding=ROUND_HALF_UP)
    return abs(rounded) if rounded == 0 else rounded


Money = Annotated[
    Decimal,
    Strict(False),
    BeforeValidator(_plain_money),
    Field(ge=0, max_digits=14, decimal_places=2),
    AfterValidator(cents),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,12}(\.\d{1,2})?$", "x-money": True}),
    MONEY,
]
"""A non-negative amount with at most two decimals; JSON numbers are refused."""

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def to_utc(value: datetime) -> datetime:
    """The same instant in UTC; the policies count days and dates in UTC."""
    if value.utcoffset() is None:
        raise ValueError("a time must carry its zone (Z or an offset such as +02:00)")
    return value.astimezone(UTC)


def _utc_timestamp(value: datetime) -> datetime:
    try:
        utc = to_utc(value)
    except OverflowError:  # year 1 or 9999 pushed across the calendar's edge
        utc = LATEST  # out of range either way
    if not EARLIEST <= utc < LATEST:
        raise ValueError("a time must be between 1970 and 2999 (UTC)")
    return utc


def utc_day(value: datetime) -> date:
    """The UTC calendar date of an aware time, whatever offset it was written with."""
    return to_utc(value).date()


Timestamp = Annotated[
    AwareDatetime,
    Strict(False),
    AfterValidator(_utc_timestamp),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 with Z or an offset; read as the UTC instant (1970-2999).",
        }
    ),
]
"""An ISO 8601 time with a zone, from its JSON string, held as the same instant in UTC."""
Day = Annotated[date, Strict(False), AfterValidator(year_in_range)]
"""An ISO 8601 date, from its JSON string, in the years 1970..2999."""

UntrustedText = Annotated[
    str,
    StringConstraints(max_length=4000),
    WithJsonSchema({"type": "string", "maxLength": 4000, "x-untrusted": True, "x-personal": True}),
    UNTRUSTED,
    PERSONAL,
]
"""Free text written by a customer: data, never instructions, and personal."""

ClauseId = Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,3}\d{1,3}[a-z]?$")]
PersonalText = Annotated[str, PERSONAL]
"""A name, street line, email or phone number: masked for readers without `audit:pii`."""


MAX_INT = 2**53
"""The largest integer a request may carry: exact in every JSON client and database."""


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from "\ud83d" in JSON
        return False
    return True


def unstorable(value: Any) -> str | None:
    """Why a request value cannot be stored and compared safely, or None.

    PostgreSQL text cannot hold NUL nor unpaired surrogates (SQLite stores both); integers
    past 2**53 overflow date arithmetic, floats and BIGINT columns. Lists and dicts (keys
    too) are walked; nested models check themselves.
    """
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return "contains a NUL character (\\u0000), which text may not hold"
            if not node.isascii() and not _utf8(node):
                return "contains an unpaired surrogate (\\ud800-\\udfff), which is not text"
        elif isinstance(node, int) and not isinstance(node, bool):
            if abs(node) > MAX_INT:
                return f"integer too large (at most {MAX_INT})"
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend(node)
    return None


def sample_json(name: str) -> dict[str, Any]:
    """A case shipped in service/kinds/samples/ (a kind's `example()` reads its own)."""
    data: dict[str, Any] = json.loads(
        resources.files("service.kinds").joinpath("samples", name).read_text(encoding="utf-8")
    )
    return data


def storable(value: Any) -> Any:
    """A field validator: the value, or ValueError naming why it cannot be stored."""
    problem = unstorable(value)
    if problem:
        raise ValueError(problem)
    return value


class StrictModel(BaseModel):
    """Base for request models: unknown fields are errors."""

    # strict: a JSON true is not a number, "3" is not a count; dates, times and money are
    # still read from their JSON strings (Timestamp, Day, Money below).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    # every field, whatever its type: no NUL in text, no integer beyond 2**53
    check_storable = field_validator("*", mode="after")(storable)


class VerdictBase(BaseModel):
    """What every verdict carries besides the kind's own fields."""

    model_config = ConfigDict(extra="forbid")

    cited_clauses: list[ClauseId] = Field(
        default_factory=list, description="Ids of the policy clauses this verdict rests on."
    )
    rationale: Annotated[str, PERSONAL] = Field(
        max_length=2000, description="Why, in one or two sentences (may quote the customer)."
    )
    confidence: float = Field(ge=0, le=1, description="How sure the decision is, 0 to 1.")

    check_storable = field_validator("*", mode="after")(storable)  # LLM output is stored too


WORDING_FIELDS = frozenset({"cited_clauses", "rationale", "confidence", "customer_message"})
"""Verdict fields that explain or word a decision; every other field is one of its terms."""


class ParametersBase(BaseModel):
    """Parameters every kind has; kinds extend this with their own numbers."""

    model_config = ConfigDict(extra="forbid")

    review_confidence_below: float = Field(default=0.7, ge=0, le=1)


class Check(BaseModel):
    """One guardrail that ran over a verdict."""

    name: str
    status: Literal["passed", "repaired", "failed"]
    detail: str | None = None


C = TypeVar("C", bound=BaseModel)
V = TypeVar("V", bound=VerdictBase)
P = TypeVar("P", bound=ParametersBase)


# --- determined and judgement parts -------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """How one determined part of a verdict is bound, and what a disagreement with it does.

    `check` names the check that reports it, `clause` the policy clause that determines the
    value; `repair` says what the clause allows a guard to do with another value: "yes" set it
    to the rules' value, "down" only bring a larger amount down to it ("at most"), "no" refuse
    the verdict (the decision falls back to the rules).
    """

    check: str
    clause: str
    repair: Literal["yes", "down", "no"] = "yes"
    why: str | None = None


TermRule = Term | Callable[[Any], Term]
"""A Term, or a function of the other side's value that gives it (to name why that value
is refused: "S9 is not a validator suggestion")."""

UNLISTED = Term("determined", "?", "no", "a term the rules did not list: refused")


@dataclass
class Ruling(Generic[V]):
    """The rules' verdict under one reading of a case's judgement parts, with the term that
    binds each determined part (by path, see term_paths). Everything but the wording
    (cited_clauses, rationale, confidence, customer_message) is determined: a path the kind
    does not list is bound by UNLISTED, so a forgotten term refuses rather than accepts."""

    verdict: V
    terms: dict[str, TermRule]
    reading: str = "the rules' reading"
    default: TermRule = UNLISTED
    objections: list[Check] = field(default_factory=list)
    """Failed checks that hold whatever the terms (e.g. an action no option allows)."""


def term_paths(verdict: BaseModel) -> dict[str, Any]:
    """Every term of a verdict by path, its wording left out: `outcome`, `items[SKU].refund_amount`
    (list entries with a sku by sku), `score_breakdown.cost`; other lists as one value."""
    data = verdict.model_dump(
        mode="json", exclude=set(WORDING_FIELDS) | set(type(verdict).model_computed_fields)
    )
    out: dict[str, Any] = {}

    def walk(path: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{path}.{key}" if path else str(key), item)
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(x, dict) and "sku" in x for x in value)
        ):
            for x in value:
                out[f"{path}[{x['sku']}]"] = "present"
                walk(f"{path}[{x['sku']}]", {k: v for k, v in x.items() if k != "sku"})
        else:
            out[path] = value

    walk("", data)
    return out


def _show(value: Any) -> str:
    return "none" if value is None else str(value)


def _smaller(a: Any, b: Any) -> bool:
    """Whether amount b is below amount a (both numbers or decimal strings)."""
    try:
        return Decimal(str(b)) < Decimal(str(a))
    except (ArithmeticError, ValueError):
        return False


@dataclass
class Comparison(Generic[V]):
    """A verdict held against a ruling: the checks, and the verdict after allowed repairs."""

    ruling: Ruling[V]
    checks: list[Check]
    verdict: V  # the ruling's terms with the other verdict's wording, when nothing failed
    failed: int
    repaired: int

    @property
    def cost(self) -> tuple[int, int]:
        return (self.failed, self.repaired)


def compare(verdict: V, ruling: Ruling[V]) -> Comparison[V]:
    """One rule for every kind: agreement on a determined part passes; a disagreement is
    repaired to the rules' value when its clause allows it, else the check fails, naming
    the clause and both values. A repaired verdict is the ruling's own verdict (with the
    other's wording), so a repair never produces a verdict the rules would not give."""
    mine, theirs = term_paths(verdict), term_paths(ruling.verdict)
    found: dict[str, list[tuple[str, bool]]] = {}
    failed, repaired = len(ruling.objections), 0
    for path in sorted(set(mine) | set(theirs)):
        got, want = mine.get(path), theirs.get(path)
        if got == want:
            continue
        rule = ruling.terms.get(path, ruling.default)
        term = rule if isinstance(rule, Term) else rule(got)
        fix = term.repair == "yes" or (term.repair == "down" and _smaller(got, want))
        if fix:
            detail = f"{path}: {_show(got)} → {_show(want)} ({term.clause})"
            repaired += 1
        else:
            detail = f"{path} is {_show(got)}; {term.clause} determines {_show(want)}"
            failed += 1
        if term.why:
            detail += f": {term.why}"
        found.setdefault(term.check, []).append((detail, fix))
    names = list(found)  # the checks that found something, in path order, then the rest
    for rule in ruling.terms.values():
        if isinstance(rule, Term) and rule.check not in names:
            names.append(rule.check)
    checks = list(ruling.objections)
    for name in names:
        problems = found.get(name, [])
        status: Literal["passed", "repaired", "failed"] = (
            "passed"
            if not problems
            else "repaired"
            if all(fix for _, fix in problems)
            else "failed"
        )
        checks.append(
            Check(name=name, status=status, detail="; ".join(d for d, _ in problems) or None)
        )
    wording = {f: getattr(verdict, f) for f in WORDING_FIELDS if f in type(verdict).model_fields}
    fixed = ruling.verdict.model_copy(deep=True, update=wording) if not failed else verdict
    return Comparison(ruling, checks, fixed, failed, repaired)


def nearest(verdict: V, rulings: Sequence[Ruling[V]]) -> Comparison[V]:
    """The comparison with the reading that fits the verdict best (fewest refused, then fewest
    repaired terms; the first reading, the rules' own, on a tie)."""
    best: Comparison[V] | None = None
    for ruling in rulings:
        result = compare(verdict, ruling)
        if best is None or result.cost < best.cost:
            best = result
        if best.cost == (0, 0):
            break
    assert best is not None, "a kind gives at least one reading"
    return best


@dataclass
class Guarded(Generic[V]):
    """The outcome of guard(): the (possibly repaired) verdict, the checks, review reasons."""

    verdict: V
    checks: list[Check]
    review_reasons: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "failed"]


class DecisionKind(ABC, Generic[C, V, P]):
    """A decision kind: one module, one spec, one prompt, one eval suite."""

    name: ClassVar[str]
    Case: type[C]
    Verdict: type[V]
    Parameters: type[P]
    guardrails_version: ClassVar[str]
    clause_refs: ClassVar[frozenset[str]]
    """Clause ids that precheck, guard and fallback cite; every spec version must define them."""
    allows_many_tool_calls: ClassVar[bool] = False
    """Whether the model may answer with several calls of the offered tool (none does yet)."""
    outcome_field: ClassVar[str | None] = "outcome"
    """The verdict field that outcome() answers (its type is the outcome's enum in the API);
    None when outcome() composes it."""
    automatic_only: ClassVar[frozenset[str]] = frozenset()
    """Guard checks that bind automatic decisions only ("never released automatically"): a
    person may go past them, with a second reviewer; for the LLM they fail like any other."""

    def analyse(self, case: C, params: P) -> Any:
        """What the rules know about a case, computed once per decision (Facts) and passed to
        precheck, guard, fallback and review_reasons."""
        return None

    def facts(self, case: C, params: P, facts: Any = None) -> Any:
        """The facts given, or analysed now (for callers outside the engine, e.g. tests)."""
        return facts if facts is not None else self.analyse(case, params)

    @abstractmethod
    def precheck(self, case: C, params: P, facts: Any = None) -> V | None:
        """A verdict when hard rules decide alone, else None."""

    @abstractmethod
    def rulings(
        self, case: C, params: P, facts: Any, verdict: V | None, *, person: bool = False
    ) -> list[Ruling[V]]:
        """The rules' verdict under each reading of the case's judgement parts, the rules' own
        reading first. `verdict`, the one to be checked (None for the fallback), may narrow
        the readings to those that could fit it; `person`: a reviewer's, who is the review
        a clause sends the case to."""

    def fallback(self, case: C, params: P, facts: Any = None) -> V:
        """The whole policy, deterministically: the rules' own reading."""
        facts = self.facts(case, params, facts)
        return self.rulings(case, params, facts, None)[0].verdict

    def prepare(self, case: C, verdict: V, params: P, facts: Any) -> tuple[V, list[Check]]:
        """Shape checks before the comparison (e.g. one entry per requested sku)."""
        return verdict, []

    def wording(
        self, case: C, verdict: V, params: P, facts: Any, *, person: bool = False
    ) -> tuple[V, list[Check]]:
        """Checks of the wording within its hard limits (e.g. the customer message)."""
        return verdict, []

    def guard(
        self,
        case: C,
        verdict: V,
        params: P,
        facts: Any = None,
        *,
        strict: bool = False,
        person: bool = False,
    ) -> Guarded[V]:
        """Check and bound a verdict, the LLM's or a reviewer's, against the rules' rulings.

        The verdict must agree with the determined parts of one reading of the case; the
        nearest reading is taken, its disagreements repaired or refused (compare). With
        `strict` (a prompt-injection signal on the case) only the rules' own reading is
        open: the model cannot loosen a part by choosing another reading.
        """
        facts = self.facts(case, params, facts)
        v, checks = self.prepare(case, verdict, params, facts)
        rulings = self.rulings(case, params, facts, v, person=person)
        result = nearest(v, rulings)
        if strict:
            own = compare(v, rulings[0]) if result.ruling is not rulings[0] else result
            checks.append(
                Check(
                    name="injection_no_loosening",
                    status="passed" if own is result else "failed",
                    detail=None
                    if own is result
                    else f"the case carries a prompt-injection signal: the verdict takes "
                    f"{result.ruling.reading}, the rules take {rulings[0].reading}",
                )
            )
            result = own
        checks += result.checks
        worded, more = self.wording(case, result.verdict, params, facts, person=person)
        return Guarded(verdict=worded, checks=[*checks, *more])

    def outcome(self, verdict: V) -> str:
        """The headline of a verdict for the envelope: by default its `outcome_field`."""
        if self.outcome_field is None:
            raise NotImplementedError(f"{self.name}: outcome() must say how it is made")
        return str(getattr(verdict, self.outcome_field))

    def outcome_type(self) -> Any:
        """The type of outcome() (an enum when it is a closed verdict field), for the API."""
        if self.outcome_field is None:
            return str
        return self.Verdict.model_fields[self.outcome_field].annotation

    @abstractmethod
    def example(self) -> dict[str, Any]:
        """A valid case as JSON: lint renders the prompt for it, the API shows it."""

    def llm_model(self, case: C, params: P, facts: Any = None) -> type[BaseModel]:
        """The response model the LLM fills; by default the verdict itself."""
        return self.Verdict

    def from_llm(self, case: C, params: P, answer: Any, facts: Any = None) -> V:
        """Turn the LLM's answer into a verdict; by default it is one."""
        verdict: V = answer
        return verdict

    def prompt_case(self, case: C, params: P, facts: Any = None) -> dict[str, Any]:
        """What the prompt shows of the case; by default all of it."""
        data: dict[str, Any] = case.model_dump(mode="json")
        return data

    def review_reasons(self, case: C, verdict: V, params: P, facts: Any = None) -> list[str]:
        """Why a person must look at this verdict before anyone acts on it, whoever made it."""
        return []

    def reference_date(self, case: C) -> date | None:
        """The date that picks the spec version in force for this case."""
        return None

    def case_value(self, case: C) -> Decimal:
        """The money at stake, for model escalation."""
        return Decimal(0)

    def subjects(self, case: C) -> tuple[str | None, str | None]:
        """(order id, customer id) of the case, for search in the log."""
        return None, None


# --- field tags: where a model's personal, untrusted and money fields are --------------


@dataclass(frozen=True)
class FieldPaths:
    """Dotted paths of a model's tagged fields; `*` stands for every item of a list."""

    personal: tuple[str, ...]
    untrusted: tuple[str, ...]
    money: tuple[str, ...]


def _tagged(tp: Any, tag: FieldTag, path: str, out: list[str], seen: frozenset[type]) -> None:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        if tag in meta:
            out.append(path)
        else:
            _tagged(base, tag, path, out, seen)
    elif origin in (Union, UnionType):
        for arg in get_args(tp):
            _tagged(arg, tag, path, out, seen)
    elif origin in (list, tuple, set, frozenset, dict):
        items = get_args(tp)[-1:] if origin is dict else get_args(tp)
        for arg in items:
            if arg is not Ellipsis:
                _tagged(arg, tag, f"{path}.*", out, seen)
    elif isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in seen:
        inner = seen | {tp}
        if issubclass(tp, RootModel):
            root = tp.model_fields["root"]
            if tag in root.metadata:
                out.append(path)
            else:
                _tagged(root.annotation, tag, path, out, inner)
            return
        for name, info in tp.model_fields.items():
            sub = f"{path}.{name}" if path else name
            if tag in info.metadata:
                out.append(sub)
            else:
                _tagged(info.annotation, tag, sub, out, inner)
        for name, computed in tp.model_computed_fields.items():
            _tagged(computed.return_type, tag, f"{path}.{name}" if path else name, out, inner)


def tagged_paths(model: type[BaseModel], tag: FieldTag) -> tuple[str, ...]:
    """Every path in `model` (nested models, lists, unions) whose field carries `tag`."""
    out: list[str] = []
    _tagged(model, tag, "", out, frozenset())
    return tuple(dict.fromkeys(out))


_FIELD_PATHS: dict[type[BaseModel], FieldPaths] = {}


def field_paths(model: type[BaseModel]) -> FieldPaths:
    """The tagged paths of a Case or Verdict model (computed once per model)."""
    found = _FIELD_PATHS.get(model)
    if found is None:
        found = _FIELD_PATHS[model] = FieldPaths(
            personal=tagged_paths(model, PERSONAL),
            untrusted=tagged_paths(model, UNTRUSTED),
            money=tagged_paths(model, MONEY),
        )
    return found


def at_path(node: Any, path: str, done: str = "") -> list[tuple[Any, Any, str]]:
    """(container, key, concrete path) of every value at a dotted path in JSON data; `*`
    is every item of a list (or value of a dict). Missing keys and nulls match nothing."""
    found: list[tuple[Any, Any, str]] = []
    stack: list[tuple[Any, list[str], str]] = [(node, path.split(".") if path else [], done)]
    while stack:
        here, parts, where = stack.pop()
        head, rest = parts[0], parts[1:]
        if head == "*":
            if isinstance(here, list):
                keys: list[Any] = list(range(len(here)))
            elif isinstance(here, dict):
                keys = list(here)
            else:
                continue
        elif isinstance(here, dict) and head in here:
            keys = [head]
        else:
            continue
        for key in keys:
            sub = f"{where}.{key}" if where else str(key)
            if rest:
                if here[key] is not None:
                    stack.append((here[key], rest, sub))
            else:
                found.append((here, key, sub))
    return found
