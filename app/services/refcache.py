"""Reference rows (funds, payment methods, VAT codes, account holders) read once per database
transaction.

A receipt reads its payment method for the receipt, again for each line's checks and for its
debit leg, and each line's fund with its validator and VAT code: the same rows, in the same
transaction. ``prefetch`` reads every line's fund and account holder in one query each (the
account holders found, and those not found, are kept for the transaction too); ``fund``,
``method`` and ``vat`` read each code once per transaction of the session and hand back the same
ORM object (what the identity map would hand back anyway, without the query). The cache is
dropped when the session's outermost transaction ends (commit or rollback), so the next
transaction reads the rows afresh: a change by an Administrator counts from the next request, as
it would without the cache. Rows not found are not remembered (a fund created later in the same
transaction is found), but for a prefetch's account holders.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, event, or_, select
from sqlalchemy.orm import Session, joinedload

from app.models.reference import AccountHolder, Fund, PaymentMethod, VatCode

_KEY = "ims_reference_rows"


def _cache(session: Session) -> dict:
    cache = session.info.get(_KEY)
    if cache is None:
        cache = session.info[_KEY] = {}
    return cache


def fund(session: Session, code: str | None) -> Fund | None:
    """The fund of ``code`` (stripped, upper case) with its validator and VAT code loaded, or
    None."""
    if not code:
        return None
    code = str(code).strip().upper()
    cache = _cache(session)
    row = cache.get(("fund", code))
    if row is None:
        row = session.scalar(_FUNDS, {"codes": [code]})
        if row is not None:
            _keep_fund(cache, row)
    return row


_FUNDS = (select(Fund).where(Fund.code.in_(bindparam("codes", expanding=True)))
          .options(joinedload(Fund.validator), joinedload(Fund.vat)))
_METHOD = select(PaymentMethod).where(PaymentMethod.code == bindparam("code"))
_VAT = select(VatCode).where(VatCode.code == bindparam("code"))
_ACCOUNT = select(AccountHolder).where(AccountHolder.fund_code == bindparam("fund"),
                                       AccountHolder.account_reference == bindparam("ref"))
#: no such account (known from a prefetch)
_NONE = object()


def prefetch(session: Session, pairs) -> None:
    """Read the funds, and the account holders, of ``pairs`` of (fund code, normalised
    reference) in one query each (a receipt's lines), for ``fund`` and ``account`` to find."""
    cache = _cache(session)
    codes = {str(f).strip().upper() for f, _ in pairs if isinstance(f, str) and f.strip()}
    wanted = sorted(c for c in codes if ("fund", c) not in cache)
    if wanted:
        for row in session.scalars(_FUNDS, {"codes": wanted}):
            _keep_fund(cache, row)
    refs = sorted({(str(f).strip().upper(), r) for f, r in pairs
                   if isinstance(f, str) and ("fund", str(f).strip().upper()) in cache and r})
    refs = [(f, r) for f, r in refs if ("account", f, r) not in cache]
    if refs:
        for f, r in refs:
            cache[("account", f, r)] = _NONE
        cond = or_(*[and_(AccountHolder.fund_code == f, AccountHolder.account_reference == r)
                     for f, r in refs])
        for row in session.scalars(select(AccountHolder).where(cond)):
            cache[("account", row.fund_code, row.account_reference)] = row


def account(session: Session, fund_code: str, reference: str) -> AccountHolder | None:
    """The account holder of fund ``fund_code`` and (normalised) ``reference``, or None: as
    prefetched for this transaction, else read now."""
    row = _cache(session).get(("account", fund_code, reference))
    if row is None:
        return session.scalar(_ACCOUNT, {"fund": fund_code, "ref": reference})
    return None if row is _NONE else row


def _keep_fund(cache: dict, row: Fund) -> None:
    cache[("fund", row.code)] = row
    if row.vat is not None:
        cache[("vat", row.vat.code)] = row.vat


def vat(session: Session, code: str | None) -> VatCode | None:
    """The VAT code ``code`` (as given), or None."""
    if not code:
        return None
    cache = _cache(session)
    row = cache.get(("vat", code))
    if row is None:
        row = session.scalar(_VAT, {"code": code})
        if row is not None:
            cache[("vat", code)] = row
    return row


def method(session: Session, code: str | None) -> PaymentMethod | None:
    """The payment method of ``code`` (stripped, upper case), or None."""
    if not code:
        return None
    code = str(code).strip().upper()
    cache = _cache(session)
    row = cache.get(("method", code))
    if row is None:
        row = session.scalar(_METHOD, {"code": code})
        if row is not None:
            cache[("method", code)] = row
    return row


def forget(session: Session) -> None:
    session.info.pop(_KEY, None)


def _transaction_ended(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_KEY, None)


if not event.contains(Session, "after_transaction_end", _transaction_ended):
    event.listen(Session, "after_transaction_end", _transaction_ended)
