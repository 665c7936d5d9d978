"""Reference rows (funds, payment methods, offices, VAT codes, account holders) for the checks
of a receipt and the like.

Funds (with their validator chain and VAT code), payment methods, VAT codes and offices change
rarely: each worker keeps them between requests in the shared cache (app/services/sharedcache.py)
while the database's cache version stands, as read-only ``Snapshot`` copies (reads work as on the
ORM row; a change to one of these tables, by anyone, counts from the next request). Within a
transaction each code is looked up once (``session.info``). ``prefetch`` reads every line's
account holder in one query (the account holders found, and those not found, are kept for the
transaction: account holders change with every sync and are not shared). The per-transaction
part is dropped when the session's outermost transaction ends (commit or rollback).
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, event, or_, select
from sqlalchemy.orm import Session, joinedload

from app.models.reference import AccountHolder, Fund, Office, PaymentMethod, VatCode
from app.services import sharedcache
from app.services.sharedcache import snapshot

_KEY = "ims_reference_rows"


def _cache(session: Session) -> dict:
    cache = session.info.get(_KEY)
    if cache is None:
        cache = session.info[_KEY] = {}
    return cache


def fund(session: Session, code: str | None):
    """The fund of ``code`` (stripped, upper case), a Snapshot with its validator chain and VAT
    code, or None."""
    if not code:
        return None
    code = str(code).strip().upper()
    return sharedcache.get(session, ("fund", code), lambda: _fund_snapshot(session.scalar(
        _FUNDS, {"codes": [code]})))


#: what a fund's snapshot holds besides its columns
_FUND_RELATIONS = {"validator": {"next_validator": "*"}, "vat": None}


def _fund_snapshot(row: Fund | None):
    return snapshot(row, _FUND_RELATIONS)


_FUNDS = (select(Fund).where(Fund.code.in_(bindparam("codes", expanding=True)))
          .options(joinedload(Fund.validator), joinedload(Fund.vat)))
_METHOD = select(PaymentMethod).where(PaymentMethod.code == bindparam("code"))
_VAT = select(VatCode).where(VatCode.code == bindparam("code"))
_ACCOUNT = select(AccountHolder).where(AccountHolder.fund_code == bindparam("fund"),
                                       AccountHolder.account_reference == bindparam("ref"))
#: no such account (known from a prefetch)
_NONE = object()


def prefetch(session: Session, pairs) -> None:
    """Look up the funds, and read the account holders in one query, of ``pairs`` of (fund
    code, normalised reference) (a receipt's lines), for ``fund`` and ``account`` to find."""
    cache = _cache(session)
    codes = {str(f).strip().upper() for f, _ in pairs if isinstance(f, str) and f.strip()}
    known = {code for code in codes if fund(session, code) is not None}
    refs = sorted({(str(f).strip().upper(), r) for f, r in pairs
                   if isinstance(f, str) and str(f).strip().upper() in known and r})
    refs = [(f, r) for f, r in refs if ("account", f, r) not in cache]
    if refs:
        for f, r in refs:
            cache[("account", f, r)] = _NONE
        for row in session.scalars(_accounts_query(len(refs)), {
                f"{k}_{i}": v for i, (f, r) in enumerate(refs)
                for k, v in (("f", f), ("r", r))}):
            cache[("account", row.fund_code, row.account_reference)] = row


#: SELECT of n account holders by (fund, reference), by n: built once each (so SQLAlchemy
#: neither builds nor keys it afresh per receipt)
_ACCOUNTS: dict[int, object] = {}


def _accounts_query(n: int):
    stmt = _ACCOUNTS.get(n)
    if stmt is None:
        stmt = select(AccountHolder).where(or_(*[
            and_(AccountHolder.fund_code == bindparam(f"f_{i}"),
                 AccountHolder.account_reference == bindparam(f"r_{i}")) for i in range(n)]))
        if n <= 50:
            _ACCOUNTS[n] = stmt
    return stmt


def account(session: Session, fund_code: str, reference: str) -> AccountHolder | None:
    """The account holder of fund ``fund_code`` and (normalised) ``reference``, or None: as
    prefetched for this transaction, else read now."""
    row = _cache(session).get(("account", fund_code, reference))
    if row is None:
        return session.scalar(_ACCOUNT, {"fund": fund_code, "ref": reference})
    return None if row is _NONE else row


def vat(session: Session, code: str | None):
    """The VAT code ``code`` (as given), a Snapshot, or None."""
    if not code:
        return None
    return sharedcache.get(session, ("vat", code),
                           lambda: snapshot(session.scalar(_VAT, {"code": code})))


def method(session: Session, code: str | None):
    """The payment method of ``code`` (stripped, upper case), a Snapshot, or None."""
    if not code:
        return None
    code = str(code).strip().upper()
    return sharedcache.get(session, ("method", code),
                           lambda: snapshot(session.scalar(_METHOD, {"code": code})))


def office_exists(session: Session, code: str) -> bool:
    """Whether an office of ``code`` (as given) exists."""
    return sharedcache.get(session, ("office", code), lambda: session.scalar(
        _OFFICE, {"code": code}) is not None)


_OFFICE = select(Office.id).where(Office.code == bindparam("code"))


def forget(session: Session) -> None:
    session.info.pop(_KEY, None)


def _transaction_ended(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_KEY, None)


if not event.contains(Session, "after_transaction_end", _transaction_ended):
    event.listen(Session, "after_transaction_end", _transaction_ended)
