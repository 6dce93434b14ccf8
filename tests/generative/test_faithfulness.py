"""The faithfulness checker: a reply may not state an amount, duration, URL, email or phone number its grounding
answers do not state. Pure functions, no model."""

from __future__ import annotations

import pytest

from rsft_plugin.generative.faithfulness import check_faithfulness, extract_facts, is_faithful

from .conftest import EXPRESS, RETURNS

GROUNDING = [
    RETURNS,
    "Standard delivery costs €4.95 and is free on orders over €50; it takes 3–5 business days. Most items are "
    "restocked within 2–4 weeks. Write to help@northwind.example, call +44 20 7946 0958 or see "
    "https://northwind.example/returns. Newsletter subscribers get a 10% welcome discount.",
    EXPRESS,
    "Every product comes with at least the 2-year legal guarantee. The link is valid for 1 hour.",
]


@pytest.mark.parametrize("reply", [
    "Yes, you can return it within 30 days of delivery.",
    "Yes, you have thirty days to send it back.",
    "Standard delivery is 4.95 EUR, free above 50 euros.",
    "It usually takes three to five working days.",
    "Most items are back within 14 days to 4 weeks.",
    "Email help@Northwind.example or call 020 7946 0958.",
    "See www.northwind.example/returns for the form.",
    "Details are at northwind.example.",
    "You get 10 percent off your first order.",
    "Your order {order_id} costs {amount}; we will write to {email}.",
    "Every product has a two year guarantee, that is 24 months.",
    "The reset link works for an hour.",
    "Express takes one to two days and costs €9.95.",
    "Our team is there 8:00–20:00 on weekdays.",
    "Orders placed on 12.05.2024 or 2024-05-12 ship the same way.",
    "Sure! Let me know if there is anything else I can help with.",
])
def test_grounded_facts_are_faithful(reply: str) -> None:
    verdict = check_faithfulness(reply, GROUNDING)
    assert verdict.faithful, verdict.violations
    assert is_faithful(reply, GROUNDING)


@pytest.mark.parametrize(("reply", "kind", "value"), [
    ("You can return it within 45 days.", "duration", "45 days"),
    ("Returns are accepted for 3 weeks.", "duration", "21 days"),
    ("Returns are accepted for six months.", "duration", "6 months"),
    ("Delivery takes 6 business days.", "duration", "6 days"),
    ("The reset link is valid for 24 hours.", "duration", "24 hours"),
    ("Express costs $12.95.", "amount", "12.95"),
    ("Gift cards go up to €1,000.", "amount", "1000"),
    ("Standard delivery is 5 euros.", "amount", "5"),
    ("Subscribers get a 15% discount.", "amount", "15%"),
    ("Write to support@northwind.example.", "email", "support@northwind.example"),
    ("Call us on +1 (555) 010-4477.", "phone", "15550104477"),
    ("Fill in https://returns.example.com/form.", "url", "returns.example.com/form"),
    ("See northwind.example/refunds for details.", "url", "northwind.example/refunds"),
])
def test_invented_facts_are_violations(reply: str, kind: str, value: str) -> None:
    verdict = check_faithfulness(reply, GROUNDING)
    assert not verdict.faithful
    assert (kind, value) in {(v.kind, v.value) for v in verdict.violations}
    assert not is_faithful(reply, GROUNDING)


def test_one_violation_per_fact_and_the_written_text() -> None:
    verdict = check_faithfulness("Return it within 45 days, yes 45 days, for €3.", RETURNS)
    assert [(v.kind, v.value, v.text) for v in verdict.violations] == [
        ("amount", "3", "€3"), ("duration", "45 days", "45 days")]
    assert not bool(verdict)


def test_a_single_grounding_text_and_no_grounding() -> None:
    assert is_faithful("30 days.", RETURNS)
    assert not is_faithful("30 days.", [])
    assert is_faithful("We are happy to help.", [])


def test_every_bank_answer_is_faithful_to_itself(bank) -> None:
    for answer in bank.answers:
        assert check_faithfulness(answer.text, [answer.text]).faithful, answer.id


def test_extracted_facts_are_normalised() -> None:
    facts = {(kind, value) for kind, value, _ in extract_facts(GROUNDING[1])}
    assert {("amount", "4.95"), ("amount", "50"), ("duration", "3 days"), ("duration", "5 days"),
            ("duration", "14 days"), ("duration", "28 days"), ("email", "help@northwind.example"),
            ("phone", "442079460958"), ("url", "northwind.example/returns"), ("amount", "10%")} <= facts
