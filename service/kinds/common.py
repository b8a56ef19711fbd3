"""Shapes and checks that more than one kind uses: order lines, customers, messages."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from service.kinds.base import Money, PersonalText, StrictModel

Count = Annotated[int, Field(strict=True, ge=1, le=10_000)]
Sku = Annotated[str, Field(min_length=1, max_length=64)]
# Categories, tags, flags, capabilities and decline codes are names the policies spell in
# lower case: `Swimwear`, `HAZMAT`, `Fragile`, `VIP` or `STOLEN_CARD` mean the same as the
# policy's name (read and logged lower-cased), never a name no clause knows.
Tag = Annotated[str, Field(max_length=64), AfterValidator(str.lower)]


class Line(StrictModel):
    sku: Sku
    title: str = Field(max_length=300)
    category: Tag
    quantity: Count
    unit_price: Money
    tags: list[Tag] = Field(default_factory=list, max_length=32)


class Customer(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    tenure_days: int = Field(ge=0)
    order_count: int = Field(ge=0)
    return_count: int = Field(ge=0)
    lifetime_value: Money
    flags: list[Tag] = Field(default_factory=list, max_length=32)
    email: PersonalText | None = Field(default=None, max_length=254)
    phone: PersonalText | None = Field(default=None, max_length=32)


EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE = re.compile(r"\+?\d[\d ().-]{6,}\d")
URL = re.compile(r"(https?://|www\.)\S+|\b[\w-]+\.(com|net|org|io|de|es|shop)\b", re.I)
MESSAGE_MAX = 600
SENTENCE_MAX = 200
"""The most the model may add to a template message: one short sentence."""

# What a model's sentence may never speak of, in English, Spanish and German (E12, R6, R14):
# scores, fraud and risk, card and bank answers, checks, notes and systems, the return
# rate, and reasons ("because ..."): the template already says what the policy allows.
# Each entry matches at a word's start, so "fraudulent", "Betrugsrisiko", "sospechoso" hit.
INTERNAL_WORDS = {
    "en": "score rating rated points percent risk fraud suspic suspect flagged secur cvv cvc verif "
    "velocity proxy vpn bank issuer declin honor honour internal note system chargeback "
    "blacklist blocklist history signal mismatch because reason algorithm screening "
    "ip_address several_orders multiple_orders many_orders our_check due_to return_rate",
    "es": "puntu calific puntos porcentaje riesgo fraud sospech seguridad verific banco emisor "
    "rechaz deneg intern nota sistema devoluciones historial señal porque debido motivo "
    "razón algoritmo varios_pedidos muchos_pedidos por_ciento",
    "de": "punkt bewert prozent risiko betrug verdacht verdächt sicherheit prüf bank ausgeb "
    "abgelehnt ablehn intern notiz vermerk system rücksendequote retourenquote signal weil "
    "wegen aufgrund grund algorithm mehrere_bestellungen viele_bestellungen",
}
NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve twenty thirty forty "
    "fifty sixty seventy eighty ninety hundred thousand "
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez doce veinte treinta "
    "cuarenta cincuenta sesenta setenta ochenta noventa cien ciento mil "
    "eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf zwanzig dreißig "
    "vierzig fünfzig sechzig siebzig achtzig neunzig hundert tausend"
)
INTERNAL = re.compile(
    r"\b("
    + "|".join(
        re.escape(w).replace("_", r"\s+") for text in INTERNAL_WORDS.values() for w in text.split()
    )
    + r")",
    re.IGNORECASE,
)
NUMBER = re.compile(r"\d|\b(" + "|".join(NUMBER_WORDS.split()) + r")\b", re.IGNORECASE)
STOP = frozenset(
    "a an and are as at be by for from has have in is it of on or our per the this to was we "
    "with you your el la los las de del y en un una que por su nuestro der die das und ein "
    "eine ist mit von zu ihr ihre wir unser".split()
)
WORD = re.compile(r"[^\W_]+(?:[_'-][^\W_]+)*", re.UNICODE)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def shares_span(message: str, text: str) -> str | None:
    """A run the message shares with an internal text: four words in a row, two of them not
    stop words, or one rare word (an identifier, or 9+ letters), anywhere in either text."""
    mine, theirs = _words(message), _words(text)
    runs = {tuple(theirs[i : i + 4]) for i in range(len(theirs) - 3)}
    for i in range(len(mine) - 3):
        run = tuple(mine[i : i + 4])
        if run in runs and len(set(run) - STOP) >= 2:
            return " ".join(run)
    rare = {w for w in theirs if len(w) >= 9 or "_" in w or any(c.isdigit() for c in w)}
    hit = next((w for w in mine if w in rare), None)
    if hit is None:  # an identifier written with spaces instead of underscores
        joined = "_".join(mine)
        hit = next((w for w in rare if "_" in w and w in joined), None)
    return hit


def message_problems(
    message: str | None,
    *,
    customer: Customer,
    forbidden: list[str],
    internal_texts: list[str],
    person: bool = False,
) -> list[str]:
    """Why a model's sentence may not be sent: length, several sentences, markup, numbers,
    internal data in English, Spanish or German, a span of an internal text, others' contacts.
    A reviewer writes the whole message: length, sentences and amounts are theirs."""
    if not message:
        return []
    problems = []
    if person and len(message) > MESSAGE_MAX:
        problems.append(f"longer than {MESSAGE_MAX} characters")
    if not person and len(message) > SENTENCE_MAX:
        problems.append(f"longer than one short sentence ({SENTENCE_MAX} characters)")
    if not person and len(re.findall(r"[.!?](\s|$)", message.strip())) > 1:
        problems.append("more than one sentence")
    if "<" in message and ">" in message:
        problems.append("contains markup; messages are plain text")
    own_email = (customer.email or "").lower()
    own_phone = _digits(customer.phone or "")
    text = message
    for m in EMAIL.finditer(message):
        if m.group(0).lower() != own_email:
            problems.append(f"contains an email address that is not the customer's ({m.group(0)})")
        text = text.replace(m.group(0), " ")
    for m in PHONE.finditer(text):
        digits = _digits(m.group(0))
        if len(digits) >= 7 and (not own_phone or digits[-7:] != own_phone[-7:]):
            problems.append("contains a phone number that is not the customer's")
        text = text.replace(m.group(0), " ")
    if URL.search(text):
        problems.append("contains a web address")
    number = None if person else NUMBER.search(text)
    if number:
        problems.append(f"contains a number ({number.group(0)!r}); amounts come from the template")
    lower = text.lower()
    for term in forbidden:
        if re.search(rf"(?<![a-z]){re.escape(term.lower())}(?![a-z])", lower):
            problems.append(f"mentions internal data ({term!r})")
    internal = INTERNAL.search(text)
    if internal:
        problems.append(f"speaks of internal data or reasons ({internal.group(0)!r})")
    for note in internal_texts:
        span = shares_span(text, note)
        if span:
            problems.append(f"repeats an internal text ({span!r})")
    return list(dict.fromkeys(problems))


def compose_message(
    template: str | None,
    model: str | None,
    *,
    customer: Customer,
    forbidden: list[str],
    internal_texts: list[str],
    person: bool = False,
) -> tuple[str | None, list[str]]:
    """The message sent: the outcome's template, plus at most one short sentence of the
    model's (courtesy, not facts) when it passes every check; and why the model's text was
    not sent. The template, repeated by the model, is not counted as the model's text.
    A reviewer's message is sent as written when it passes the same checks of content."""
    if person and model:
        problems = message_problems(
            model,
            customer=customer,
            forbidden=forbidden,
            internal_texts=internal_texts,
            person=True,
        )
        return (template if problems else model), problems
    extra = (model or "").strip()
    if template and extra.startswith(template):
        extra = extra[len(template) :].strip()
    if not extra:
        return template, []
    problems = message_problems(
        extra, customer=customer, forbidden=forbidden, internal_texts=internal_texts
    )
    if problems:
        return template, problems
    message = f"{template} {extra}" if template else extra
    if len(message) > MESSAGE_MAX:
        return template, [f"longer than {MESSAGE_MAX} characters with the template"]
    return message, []
