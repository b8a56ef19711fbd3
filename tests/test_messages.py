"""Issue 14.3: a customer message is the outcome's template plus at most one short sentence
of the model's, which never carries internal data, in English, Spanish or German."""

from __future__ import annotations

from typing import Any

import pytest

from service.kinds.common import Customer, compose_message
from service.kinds.exceptions import KIND as EXCEPTIONS
from service.kinds.exceptions import ExceptionCase
from service.kinds.registry import KINDS
from service.settings import PROJECT_ROOT
from service.specs.loader import load_spec
from tests import exception_cases as ex
from tests.fake_openai import verdict

CUSTOMER = Customer(
    id="C1",
    tenure_days=10,
    order_count=3,
    return_count=0,
    lifetime_value="10.00",  # type: ignore[arg-type]
    email="dana@example.com",
    phone="+1 207 555 0142",
)
NOTE = (
    "Customer previously disputed two charges; shipping address matches a reshipper "
    "warehouse in Delaware, keep on watch for serial returns"
)
TEMPLATE = "We need a quick confirmation from you before we can ship your order."


def compose(sentence: str) -> tuple[str | None, list[str]]:
    return compose_message(
        TEMPLATE,
        sentence,
        customer=CUSTOMER,
        forbidden=["velocity", "cvv_mismatch"],
        internal_texts=[NOTE],
    )


LEAKS = [
    # scores, in words and figures
    "Our checks rated this order 91 out of 100.",
    "Your order scored ninety-one on our scale.",
    "Nuestro sistema calificó su pedido con noventa y uno.",
    "Ihre Bestellung wurde mit einundneunzig Punkten bewertet.",
    # fraud signals, paraphrased
    "The card security code did not match and we saw several orders in a short time.",
    "El código de seguridad no coincidía y vimos varios pedidos en poco tiempo.",
    "Der Sicherheitscode stimmte nicht und es gab mehrere Bestellungen kurz hintereinander.",
    "We suspect this purchase may not be genuine.",
    "Sospechamos que la compra no es legítima.",
    "Wir haben einen Betrugsverdacht.",
    # decline answers
    "Your bank answered 'do not honor'.",
    "Su banco rechazó el pago.",
    "Ihre Bank hat die Zahlung abgelehnt.",
    # reasons beyond the policy
    "We are holding it because of your history with us.",
    "Lo retenemos porque su historial es inusual.",
    "Wir halten sie zurück, weil Ihr Konto auffällig ist.",
    # internal notes, from any part of the note
    "Your address matches a reshipper warehouse in Delaware.",
    "We keep on watch for serial returns.",
    "You previously disputed two charges.",
    # other people's contacts, links, markup
    "Write to risk-team@shop.example for details.",
    "Call our desk at +1 (555) 010-9999.",
    "See shop-help.example.com for details.",
    "<b>Thanks</b> for waiting.",
    # more than one short sentence
    "Thank you. We appreciate your patience.",
    "x" * 240,
]
COURTESY = [
    "Thank you for your patience.",
    "Gracias por su paciencia.",
    "Vielen Dank für Ihre Geduld.",
    "We'll email you at dana@example.com to confirm your address.",
    "We're sorry for the trouble and hope to see you again soon.",
    "Lamentamos las molestias.",
    "Entschuldigen Sie die Unannehmlichkeiten.",
]


@pytest.mark.parametrize("sentence", LEAKS)
def test_a_leaking_sentence_is_dropped_and_the_template_sent(sentence: str) -> None:
    message, problems = compose(sentence)
    assert problems, sentence
    assert message == TEMPLATE


@pytest.mark.parametrize("sentence", COURTESY)
def test_one_courteous_sentence_is_added(sentence: str) -> None:
    message, problems = compose(sentence)
    assert not problems, problems
    assert message == f"{TEMPLATE} {sentence}"


def test_the_template_repeated_by_the_model_is_not_its_text() -> None:
    assert compose(TEMPLATE) == (TEMPLATE, [])
    assert compose(f"{TEMPLATE} Thank you!") == (f"{TEMPLATE} Thank you!", [])
    assert compose(f"{TEMPLATE} It scored 91.")[0] == TEMPLATE


def test_a_reviewer_writes_the_whole_message_within_the_same_content_checks() -> None:
    ok, problems = compose_message(
        TEMPLATE,
        "Your refund of 129.00 USD is on its way. Thank you!",
        customer=CUSTOMER,
        forbidden=[],
        internal_texts=[NOTE],
        person=True,
    )
    assert not problems and ok and ok.startswith("Your refund of 129.00")
    bad, problems = compose_message(
        TEMPLATE,
        "Our fraud team flagged you.",
        customer=CUSTOMER,
        forbidden=[],
        internal_texts=[NOTE],
        person=True,
    )
    assert problems and bad == TEMPLATE


@pytest.mark.parametrize(
    "sentence",
    [
        "Our checks rated this order 91 out of 100.",
        "Vimos varios pedidos en poco tiempo.",
        "Unsere Prüfung ergab ein erhöhtes Risiko.",
    ],
)
def test_the_guard_sends_the_template_for_a_leaking_model_message(sentence: str) -> None:
    spec = load_spec(PROJECT_ROOT / "specs" / "exceptions.md")
    case = ExceptionCase.model_validate(ex.fraud(60, ["velocity"]))
    rules = EXCEPTIONS.fallback(case, spec.params)
    answer = rules.model_copy(update={"customer_message": sentence})
    g = EXCEPTIONS.guard(case, answer, spec.params)
    assert {c.name: c.status for c in g.checks}["customer_message_safe"] == "repaired"
    assert g.verdict.customer_message == rules.customer_message


async def test_analyse_runs_once_per_decision(
    fake_api: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.2: the engine computes the facts once; every step reads them."""
    api, llm = fake_api
    k = KINDS["exceptions"]
    data = ex.fraud(60, ["velocity"])  # in between: the model is asked, guarded, reviewed
    spec = load_spec(PROJECT_ROOT / "specs" / "exceptions.md")
    answer = k.fallback(k.Case.model_validate(data), spec.params).model_dump(mode="json")
    llm.script(verdict(answer))  # scripted: the fake model does not run the rules itself
    calls: list[str] = []
    real = type(k).analyse

    def counted(self: Any, case: Any, params: Any) -> Any:
        calls.append(case.root.order.id)
        return real(self, case, params)

    monkeypatch.setattr(type(k), "analyse", counted)
    r = await api.decide("exceptions", data)
    assert r.status_code == 200 and r.json()["source"] == "llm", r.text
    assert len(calls) == 1
