"""Double-entry postings: balanced posting groups, reversals, numbers, income rows, balances.

Services take the session and never commit here: the caller's use case commits once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import case, exists, func, select, text, update
from sqlalchemy.orm import Session, aliased

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.ids import parse_id
from app.domain.money import Money, vat_of
from app.models.ledger import (
    ACCOUNTS,
    GROUP_KINDS,
    NOT_BANK,
    LedgerLine,
    NumberSequence,
    PostingGroup,
    Transaction,
)
from app.models.reference import VatCode
from app.services import audit
from app.services.locking import for_update

BANK = "BANK"
SUSPENSE = "SUSPENSE"
REFUNDS_PAYABLE = "REFUNDS_PAYABLE"
WRITE_OFFS = "WRITE_OFFS"
FUND = "FUND"
MIGRATION = "MIGRATION"

#: Default number prefix per posting-group kind.
PREFIXES = {"receipt": "R", "journal": "J", "transfer": "T", "import": "I", "suspense": "S",
            "allocation": "A", "refund": "F", "refund_payment": "P", "write_off": "W",
            "reversal": "V", "migration": "M"}

_reservations: list[Callable[[Session, int], int]] = []


@dataclass(frozen=True)
class Leg:
    account: str
    amount: int
    fund_code: str | None = None
    account_reference: str | None = None
    transaction_id: int | None = None


def register_reservation(fn: Callable[[Session, int], int]) -> Callable[[Session, int], int]:
    """Register fn(session, transaction_id) -> pence reserved against it (e.g. pending refunds)."""
    if fn not in _reservations:
        _reservations.append(fn)
    return fn


def reserve_numbers(session: Session, prefix: str, n: int = 1) -> int:
    """Take ``n`` consecutive numbers of ``prefix``; returns the first. Unique; gaps possible
    when a use case fails."""
    table = NumberSequence.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    # one statement, so two use cases taking the first numbers of a new prefix cannot collide
    stmt = upsert(table).values(prefix=prefix, last_value=n)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.prefix],
                                      set_={"last_value": table.c.last_value + n})
    return session.execute(stmt.returning(table.c.last_value)).scalar_one() - n + 1


def next_number(session: Session, prefix: str) -> str:
    """The next number for prefix, e.g. "R000124"."""
    prefix = prefix.upper()
    return f"{prefix}{reserve_numbers(session, prefix):06d}"


def _check_legs(legs: list[Leg]) -> None:
    errors: list[str] = []
    if len(legs) < 2:
        errors.append("A posting needs at least two legs.")
    for i, leg in enumerate(legs):
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int):
            errors.append(f"Leg {i + 1}: amount must be whole pence.")
            continue
        if leg.amount == 0:
            errors.append(f"Leg {i + 1}: amount must not be zero.")
        if leg.account not in ACCOUNTS:
            errors.append(f"Leg {i + 1}: unknown ledger account {leg.account!r}.")
        if leg.account == FUND and not leg.fund_code:
            errors.append(f"Leg {i + 1}: a fund leg needs a fund code.")
    if not errors and sum(leg.amount for leg in legs) != 0:
        errors.append(f"The legs do not balance (sum {Money(sum(l.amount for l in legs))}).")
    if errors:
        raise ValidationError("The posting is not valid: " + " ".join(errors), {"legs": errors})


def post_group(session: Session, kind: str, legs: Iterable[Leg], *, actor: str,
               office_code: str | None = None, reason: str | None = None,
               import_id: int | None = None, number: str | None = None,
               reverses: PostingGroup | None = None) -> PostingGroup:
    """Post one balanced group of legs. Flushes and audits; the caller commits."""
    legs = list(legs)
    if kind not in GROUP_KINDS:
        raise ValidationError(f"Unknown posting kind {kind!r}.", {"kind": ["Unknown kind."]})
    _check_legs(legs)
    group = PostingGroup(kind=kind, number=number or next_number(session, PREFIXES[kind]),
                         created_by=actor, office_code=office_code, reason=reason,
                         import_id=import_id, reverses_id=reverses.id if reverses else None)
    session.add(group)
    session.flush()
    # one statement for all the legs: the database checks each statement's groups balance
    session.execute(LedgerLine.__table__.insert().values([
        dict(group_id=group.id, account=leg.account, amount=leg.amount, fund_code=leg.fund_code,
             account_reference=leg.account_reference, transaction_id=leg.transaction_id)
        for leg in legs]))
    session.expire(group, ["lines"])
    audit.record(session, "post", "PostingGroup", group.id, after={
        "kind": kind, "number": group.number, "office_code": office_code, "import_id": import_id,
        "reverses": reverses.number if reverses else None,
        "legs": [f"{l.account}:{l.fund_code or ''}:{l.account_reference or ''}:{Money(l.amount)}"
                 for l in legs]}, reason=reason, actor=actor)
    return group


def is_reversed(session: Session, group: PostingGroup | int) -> bool:
    gid = group if isinstance(group, int) else group.id
    return session.scalar(select(PostingGroup.id).where(PostingGroup.reverses_id == gid)) is not None


def reverse_group(session: Session, group: PostingGroup, *, actor: str, reason: str,
                  kind: str = "reversal") -> PostingGroup:
    """Post the opposite of every line of group. Once only; a reason is required."""
    if not reason or not reason.strip():
        raise ValidationError("Give a reason for the reversal.", {"reason": ["A reason is required."]})
    if group.reverses_id is not None:
        raise Conflict(f"{group.number} is itself a reversal and cannot be reversed.")
    if is_reversed(session, group):
        raise Conflict(f"{group.number} has already been reversed.")
    lines = session.scalars(select(LedgerLine).where(LedgerLine.group_id == group.id)
                            .order_by(LedgerLine.id)).all()
    legs = [Leg(l.account, -l.amount, l.fund_code, l.account_reference, l.transaction_id)
            for l in lines]
    from sqlalchemy.exc import IntegrityError

    try:
        return post_group(session, kind, legs, actor=actor, office_code=group.office_code,
                          reason=reason.strip(), import_id=group.import_id, reverses=group)
    except IntegrityError:  # a concurrent reversal won the unique reverses_id
        session.rollback()
        raise Conflict(f"{group.number} has already been reversed.") from None


def lock_transaction(session: Session, transaction_id: int) -> Transaction:
    """The transaction row, locked until the caller commits (locking.for_update)."""
    tid = parse_id(transaction_id)
    if tid is None:
        raise NotFound(f"Transaction {transaction_id!s:.40} does not exist.")
    stmt = for_update(session, select(Transaction).where(Transaction.id == tid))
    txn = session.scalar(stmt.execution_options(populate_existing=True))
    if txn is None:
        raise NotFound(f"Transaction {transaction_id} does not exist.")
    return txn


def moved_out(session: Session, transaction_id: int) -> int:
    """Pence journalled or transferred out of a transaction and not reversed."""
    rev = aliased(PostingGroup)
    return int(session.scalar(
        select(func.coalesce(func.sum(Transaction.amount), 0))
        .join(PostingGroup, PostingGroup.id == Transaction.posting_group_id)
        .where(Transaction.source_transaction_id == transaction_id,
               ~exists(select(rev.id).where(rev.reverses_id == PostingGroup.id)))) or 0)


def reserved(session: Session, transaction_id: int) -> int:
    return sum(int(fn(session, transaction_id) or 0) for fn in _reservations)


def available_amount(session: Session, transaction: Transaction) -> int:
    """amount − journals/transfers out (not reversed) − reservations (e.g. refunds); 0 if reversed."""
    if is_reversed(session, transaction.posting_group_id):
        return 0
    return transaction.amount - moved_out(session, transaction.id) - reserved(session, transaction.id)


def record_income(session: Session, *, group: PostingGroup, fund_code: str,
                  account_reference: str | None, amount: int, payment_method_code: str,
                  transaction_date: date, narrative: str | None = None,
                  vat_code: str | None = None, external_reference: str | None = None,
                  office_code: str | None = None, created_by: str,
                  source_transaction_id: int | None = None,
                  vat_amount: int | None = None) -> Transaction:
    """Record one line of income posted in group; links the group's matching credit line to it.
    Its receipt number and import are its group's (searches find them through the group)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationError("Income amount must be more than zero.", {"amount": ["Must be more than zero."]})
    if vat_amount is None:
        vat_amount = 0
        if vat_code:
            rate = session.scalar(select(VatCode.rate).where(VatCode.code == vat_code))
            if rate is None:
                raise ValidationError(f"Unknown VAT code {vat_code}.", {"vat_code": ["Unknown VAT code."]})
            vat_amount = vat_of(Money(amount), rate).pence
    txn = Transaction(receipt_number=group.number, fund_code=fund_code,
                      account_reference=account_reference, amount=amount, vat_code=vat_code,
                      vat_amount=vat_amount, payment_method_code=payment_method_code,
                      narrative=narrative, transaction_date=transaction_date,
                      external_reference=external_reference,
                      office_code=office_code if office_code is not None else group.office_code,
                      created_by=created_by, import_id=group.import_id,
                      posting_group_id=group.id, source_transaction_id=source_transaction_id)
    session.add(txn)
    session.flush()
    ref_match = (LedgerLine.account_reference.is_(None) if account_reference is None
                 else LedgerLine.account_reference == account_reference)
    line_id = session.scalar(select(LedgerLine.id).where(
        LedgerLine.group_id == group.id, LedgerLine.fund_code == fund_code, ref_match,
        LedgerLine.amount == -amount, LedgerLine.transaction_id.is_(None),
    ).order_by(LedgerLine.id).limit(1))
    if line_id is not None:
        session.execute(update(LedgerLine.__table__).where(LedgerLine.__table__.c.id == line_id)
                        .values(transaction_id=txn.id))
    return txn


def balance_of(session: Session, account: str, fund_code: str | None = None,
               account_reference: str | None = None) -> int:
    """Net balance (debits positive) of a ledger account, optionally for one fund / account."""
    stmt = select(func.coalesce(func.sum(LedgerLine.amount), 0)).where(LedgerLine.account == account)
    if account != BANK:  # the (account, fund, reference) index leaves BANK lines out
        stmt = stmt.where(text(NOT_BANK))
    if fund_code is not None:
        stmt = stmt.where(LedgerLine.fund_code == fund_code)
    if account_reference is not None:
        stmt = stmt.where(LedgerLine.account_reference == account_reference)
    return int(session.scalar(stmt) or 0)


def trial_balance(session: Session) -> dict:
    """Net balance per ledger account (and fund); balanced when debits equal credits."""
    rows = session.execute(
        select(LedgerLine.account, LedgerLine.fund_code,
               func.coalesce(func.sum(case((LedgerLine.amount > 0, LedgerLine.amount), else_=0)), 0),
               func.coalesce(func.sum(case((LedgerLine.amount < 0, -LedgerLine.amount), else_=0)), 0))
        .group_by(LedgerLine.account, LedgerLine.fund_code)
        .order_by(LedgerLine.account, LedgerLine.fund_code)).all()
    accounts = []
    total_debits = total_credits = 0
    for account, fund_code, dr, cr in rows:
        net = int(dr) - int(cr)
        accounts.append({"account": account, "fund_code": fund_code, "debits": int(dr),
                         "credits": int(cr), "balance": net,
                         "debit": net if net > 0 else 0, "credit": -net if net < 0 else 0})
        if net > 0:
            total_debits += net
        else:
            total_credits += -net
    return {"balanced": total_debits == total_credits, "total_debits": total_debits,
            "total_credits": total_credits, "accounts": accounts}


def unbalanced_groups(session: Session, limit: int = 100) -> list[int]:
    """Ids of posting groups whose lines do not sum to zero (should always be empty)."""
    return list(session.scalars(select(LedgerLine.group_id).group_by(LedgerLine.group_id)
                                .having(func.sum(LedgerLine.amount) != 0).limit(limit)))
