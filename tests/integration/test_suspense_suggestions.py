"""Suggestions for suspense items: exact, near-miss (transposition / wrong digit that makes a valid
check digit of an existing account), fuzzy name matches and processing rules, each with a reason."""

from __future__ import annotations

import time

from sqlalchemy import select

from app.models.imports import ProcessingRule
from app.models.reference import AccountHolder
from app.services import suggestions as SG
from app.services.validation import check_reference_format
from tests.conftest import unique
from tests.integration.test_suspense_service import make_item


def _ctax(session):
    return session.scalar(select(AccountHolder).where(AccountHolder.fund_code == "CTAX")
                          .order_by(AccountHolder.id).limit(1))


def test_candidates_are_bounded():
    cands = SG.reference_candidates("1234567890")
    assert len(cands) == 9 + 10 * 9
    assert cands["2134567890"] == "characters 1 and 2 swapped"
    assert cands["1234567891"] == "digit 10 is 1, not 0"
    assert SG.reference_candidates("X" * 31) == {}


def test_transposition_near_miss(session):
    acct = _ctax(session)
    ref = acct.account_reference
    i = next(k for k in range(len(ref) - 1) if ref[k] != ref[k + 1])
    wrong = ref[:i] + ref[i + 1] + ref[i] + ref[i + 2:]
    item = make_item(session, 1_00, reference=wrong)
    found = SG.suggest(session, item)
    hit = [s for s in found if s.account_reference == ref and s.fund_code == "CTAX"]
    assert hit and hit[0].kind == "near_miss"
    assert "swapped" in hit[0].reason and "check digit" in hit[0].reason


def test_wrong_digit_near_miss_only_when_check_digit_valid(session):
    acct = _ctax(session)
    ref = acct.account_reference
    validator = acct.fund.validator
    # change one digit of the body: the check digit then fails, so the item reference is invalid
    for pos in range(len(ref) - 1):
        for d in "0123456789":
            wrong = ref[:pos] + d + ref[pos + 1:]
            if wrong != ref and not check_reference_format(validator, wrong)[0]:
                break
        else:
            continue
        break
    item = make_item(session, 1_00, reference=wrong)
    found = SG.suggest(session, item)
    hit = [s for s in found if s.account_reference == ref]
    assert hit and f"digit {pos + 1} is {ref[pos]}" in hit[0].reason
    # every near-miss suggested is a valid reference of an existing account
    for s in found:
        if s.kind == "near_miss":
            holder = session.scalar(select(AccountHolder).where(
                AccountHolder.fund_code == s.fund_code,
                AccountHolder.account_reference == s.account_reference))
            assert holder is not None
            assert check_reference_format(holder.fund.validator, s.account_reference)[0]


def test_exact_reference_of_an_account(session):
    acct = _ctax(session)
    item = make_item(session, 1_00, reference=acct.account_reference.lower())
    found = SG.suggest(session, item)
    assert found[0].kind == "exact" and found[0].account_reference == acct.account_reference


def test_fuzzy_name_match(session):
    ref = unique("FZ")
    session.add(AccountHolder(fund_code="TWS", account_reference=ref, name="Zephaniah Quartermaine"))
    session.commit()
    item = make_item(session, 1_00, reference="NO REF", narrative="BGC Z QUARTERMAINE WASTE")
    found = SG.suggest(session, item)
    hit = [s for s in found if s.account_reference == ref]
    assert hit and hit[0].kind == "fuzzy" and "Quartermaine" in hit[0].reason
    nothing = make_item(session, 1_00, reference="NO REF", narrative="BGC XQWZ")
    assert not [s for s in SG.suggest(session, nothing) if s.kind == "fuzzy"]


def test_processing_rule_suggestion(session):
    prefix = unique("RU", 6)
    session.add(ProcessingRule(name=f"Trade waste {prefix}", priority=1, enabled=True,
                               conditions=f'reference starts_with "{prefix}"', set_fund_code="TWS",
                               stop_processing=False))
    session.commit()
    try:
        item = make_item(session, 2_00, reference=f"{prefix}123")
        found = SG.suggest(session, item)
        hit = [s for s in found if s.kind == "rule"]
        assert hit and hit[0].fund_code == "TWS" and prefix in hit[0].reason
    finally:
        session.query(ProcessingRule).filter(ProcessingRule.name == f"Trade waste {prefix}").delete()
        session.commit()


def test_suggestions_are_quick(session):
    item = make_item(session, 1_00, reference="123456789", narrative="PAYMENT JONES DAVIES EVANS")
    t = time.perf_counter()
    SG.suggest(session, item)
    assert time.perf_counter() - t < 2.0


def test_initials_rank_matching_first_names(session):
    tag = unique("", 6).replace("0", "Q").replace("1", "W").replace("2", "E").replace("3", "R") \
        .replace("4", "T").replace("5", "Y").replace("6", "U").replace("7", "I").replace("8", "O") \
        .replace("9", "P")
    surname = "Vandersloot" + tag
    j, w = unique("JI"), unique("WI")
    session.add_all([AccountHolder(fund_code="TWS", account_reference=j, name=f"Jane {surname}"),
                     AccountHolder(fund_code="TWS", account_reference=w, name=f"Wyn {surname}")])
    session.commit()
    item = make_item(session, 1_00, reference="NONE", narrative=f"BGC J {surname.upper()}")
    refs = [s.account_reference for s in SG.suggest(session, item) if s.kind == "fuzzy"]
    assert j in refs
    assert w not in refs or refs.index(j) < refs.index(w)
