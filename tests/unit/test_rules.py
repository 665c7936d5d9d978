"""Processing-rule conditions: OR of AND groups, every operator, money comparisons."""

from __future__ import annotations

import pytest

from app.services.rules import CompiledRule, RuleSet, parse_conditions


def matches(text, **state):
    s = {"reference": "", "amount": 0, "narrative": "", "fund": ""}
    s.update(state)
    groups = parse_conditions(text)
    return any(all(p(s) for p in g) for g in groups)


@pytest.mark.parametrize("cond,state,expected", [
    ('reference equals "abc1"', {"reference": "ABC1"}, True),
    ('reference equals "abc"', {"reference": "ABC1"}, False),
    ('narrative contains "park"', {"narrative": "PCN PARKING"}, True),
    ('reference starts_with PCN', {"reference": "PCN123"}, True),
    ('reference ends_with 123', {"reference": "PCN123"}, True),
    ('reference ends_with 12', {"reference": "PCN123"}, False),
    (r'reference regex "^[0-9]{8}X$"', {"reference": "12345678X"}, True),
    (r'reference regex "^[0-9]{8}X$"', {"reference": "12345678x"}, False),
    ("amount > 10.00", {"amount": 1001}, True),
    ("amount > 10.00", {"amount": 1000}, False),
    ("amount > 9", {"amount": 1000}, True),          # money, not text: "10.00" > "9" is False as text
    ("amount < 9.99", {"amount": 998}, True),
    ("amount between 10.00 20.00", {"amount": 2000}, True),
    ("amount between 10.00 and 20.00", {"amount": 2001}, False),
    ("amount equals 0.10", {"amount": 10}, True),
    ("amount > £1,000.00", {"amount": 100001}, True),   # as people type amounts in the editor
    ("amount > -5", {"amount": 0}, True),
    ('fund equals ctax', {"fund": "CTAX"}, True),
    ('reference starts_with "A" AND amount > 5.00', {"reference": "AB", "amount": 400}, False),
    ('reference starts_with "A" AND amount > 5.00\nnarrative contains rent',
     {"reference": "ZZ", "narrative": "RENT"}, True),
    ('reference starts_with "A" OR narrative contains rent', {"narrative": "rent"}, True),
    ("", {}, False),
])
def test_operators(cond, state, expected):
    assert matches(cond, **state) is expected


@pytest.mark.parametrize("bad", [
    "colour equals red", "reference likes x", "amount contains 5", "reference > 5",
    "amount > lots", "amount between 1.00", 'reference regex "("', 'reference equals "open',
    "amount > 1.234", "amount > 12,34", "amount > ١٢", "amount > +5", "amount > .5",
])
def test_bad_conditions_name_the_problem(bad):
    with pytest.raises(ValueError, match="line 1"):
        parse_conditions(bad)


def test_priority_actions_and_stop():
    def rule(name, cond, stop=False, **acts):
        return CompiledRule(0, name, parse_conditions(cond), acts.get("fund"), acts.get("ref"),
                            acts.get("nar"), stop)

    rs = RuleSet([rule("one", 'reference starts_with "X"', ref="Y1"),
                  rule("two", 'reference equals "Y1"', stop=True, fund="TWS"),
                  rule("three", "", nar="never")])
    state = {"reference": "X9", "amount": 100, "narrative": "", "fund": ""}
    assert rs.run(state) == ["one", "two"]
    assert state["reference"] == "Y1" and state["fund"] == "TWS" and state["narrative"] == ""
