"""Reference rows (funds, payment methods) read once per database transaction.

A receipt reads its payment method for the receipt, again for each line's checks and for its
debit leg, and each line's fund with its validator and VAT code: the same rows, in the same
transaction. ``fund``, ``method`` and ``vat`` read each code once per transaction of the session and
hand back the same ORM object (what the identity map would hand back anyway, without the
query). The cache is dropped when the session's outermost transaction ends (commit or
rollback), so the next transaction reads the rows afresh: a change by an Administrator counts
from the next request, as it would without the cache. Rows not found are not remembered (a
fund created later in the same transaction is found).
"""

from __future__ import annotations

from sqlalchemy import event, select
from sqlalchemy.orm import Session, joinedload

from app.models.reference import Fund, PaymentMethod, VatCode

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
        row = session.scalar(select(Fund).where(Fund.code == code)
                             .options(joinedload(Fund.validator), joinedload(Fund.vat)))
        if row is not None:
            cache[("fund", code)] = row
            if row.vat is not None:
                cache[("vat", row.vat.code)] = row.vat
    return row


def vat(session: Session, code: str | None) -> VatCode | None:
    """The VAT code ``code`` (as given), or None."""
    if not code:
        return None
    cache = _cache(session)
    row = cache.get(("vat", code))
    if row is None:
        row = session.scalar(select(VatCode).where(VatCode.code == code))
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
        row = session.scalar(select(PaymentMethod).where(PaymentMethod.code == code))
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
