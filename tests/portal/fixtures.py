"""Portal fixtures: the Housing Rents fund (account must exist, check digit, an account on stop)
offered online with English and Welsh public texts, restored after each test."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from app.models.reference import AccountHolder, Fund
from app.services.seed import make_reference
from app.services.validation import check_reference_format

PUBLIC = dict(offered_online=True, public_name="Rent", public_name_cy="Rhent",
              reference_label="Rent account number", reference_label_cy="Rhif cyfrif rhent",
              reference_help="9 characters starting HR, on your rent card",
              reference_help_cy="9 nod yn dechrau HR, ar eich cerdyn rhent",
              public_stop_message=None, public_stop_message_cy=None,
              ask_payer_name=False, ask_payer_email=True, ask_payer_address=False)


@pytest.fixture
def online(session):
    """{"fund", "open" (a reference with an account), "stopped" (an account on stop),
    "missing" (valid format, no account), "bad_digit" (wrong check digit)}, HRA offered online."""
    from flask import current_app

    current_app.appbuilder.sm.limiter.reset()  # rate limits counted by earlier tests from 127.0.0.1
    fund = session.scalar(select(Fund).where(Fund.code == "HRA"))
    saved = {k: getattr(fund, k) for k in PUBLIC}
    for k, v in PUBLIC.items():
        setattr(fund, k, v)
    accounts = {a.account_reference: a for a in session.scalars(
        select(AccountHolder).where(AccountHolder.fund_code == "HRA"))}
    # an open account a payer could type: other tests add HRA accounts of their own whose
    # references need not pass the fund's format (closed, or a tag cut to ten characters)
    open_ref = next(r for r, a in sorted(accounts.items()) if not a.stop_message
                    and a.closed_at is None and check_reference_format(fund.validator, r)[0])
    stopped = next((a for a in accounts.values() if a.stop_message), None)
    added = None
    rng = random.Random(16)
    if stopped is None:
        ref = next(r for r in (make_reference(fund.validator, rng) for _ in range(500))
                   if r not in accounts)
        added = stopped = AccountHolder(fund_code="HRA", account_reference=ref, name="Ms Secret Holder",
                                        stop_message="Staff only: insolvency case 42")
        session.add(stopped)
    missing = next(r for r in (make_reference(fund.validator, rng) for _ in range(500))
                   if r not in accounts and r != stopped.account_reference)
    last = missing[-1]
    bad_digit = missing[:-1] + ("1" if last != "1" else "2")
    session.commit()
    yield {"fund": fund, "open": open_ref, "stopped": stopped.account_reference,
           "missing": missing, "bad_digit": bad_digit, "holder": accounts[open_ref].name,
           "stop_reason": stopped.stop_message}
    session.rollback()
    fund = session.scalar(select(Fund).where(Fund.code == "HRA"))
    for k, v in saved.items():
        setattr(fund, k, v)
    if added is not None:
        session.delete(session.merge(added))
    session.commit()
