"""Journals (reallocations of received money), their undo, and transfers between accounts.

The source transaction rows are locked (SELECT ... FOR UPDATE on PostgreSQL) before the available
amount is read, so two concurrent journals can never take more than is available.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.ids import to_id
from app.domain.money import Money
from app.models.ledger import PostingGroup, Transaction
from app.models.reference import PaymentMethod
from app.services import audit
from app.services import ledger as L
from app.services.receipts import check_line
from app.services.scope import fund_allowed, keep, require_fund


def _method_code(session: Session, kind: str, default: str) -> str:
    code = session.scalar(select(PaymentMethod.code).where(PaymentMethod.kind == kind)
                          .order_by(PaymentMethod.id).limit(1))
    return code or default


def _reason(reason) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("Give a reason.", {"reason": ["A reason is required."]})
    if len(reason) > 1000:
        raise ValidationError("The reason is too long.", {"reason": ["At most 1000 characters."]})
    return reason.strip()


def _targets(session: Session, targets, errors: dict, *, may_override_stop: bool) -> list[dict]:
    if not isinstance(targets, list) or not targets:
        errors.setdefault("targets", []).append("Add at least one target.")
        return []
    cleaned = []
    for i, t in enumerate(targets):
        c = check_line(session, t, f"targets[{i}]", errors, may_override_stop=may_override_stop,
                       allow_vat=False)
        if c is not None:
            cleaned.append(c)
    return cleaned


def _transaction_id(value, field: str = "transaction_id") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValidationError(f"{field}: not a transaction", {field: ["Give a transaction id."]})
    try:
        return to_id(value)
    except ValueError:
        raise ValidationError(f"{field}: not a transaction", {field: ["Give a transaction id."]}) from None


def _post_moves(session: Session, kind: str, pairs: list[tuple[Transaction, int, dict]], *,
                actor: str, reason: str, office_code: str | None,
                accounting_date: dt.date | None = None) -> tuple[PostingGroup, list[Transaction]]:
    """Dr source Fund:account / Cr target Fund:account for each (source, amount, target) move."""
    debits: dict[int, int] = {}
    for src, amount, _ in pairs:
        debits[src.id] = debits.get(src.id, 0) + amount
    sources = {src.id: src for src, _, _ in pairs}
    legs = [L.Leg(L.FUND, amt, sources[sid].fund_code, sources[sid].account_reference, sid)
            for sid, amt in debits.items()]
    legs += [L.Leg(L.FUND, -amount, tgt["fund_code"], tgt["account_reference"])
             for _, amount, tgt in pairs]
    group = L.post_group(session, kind, legs, actor=actor, office_code=office_code, reason=reason,
                         accounting_date=accounting_date, strict_date=accounting_date is not None)
    method = _method_code(session, kind, "JNL" if kind == "journal" else "TRF")
    today = dt.date.today()
    created = []
    for src, amount, tgt in pairs:
        created.append(L.record_income(
            session, group=group, fund_code=tgt["fund_code"], account_reference=tgt["account_reference"],
            amount=amount, payment_method_code=method, transaction_date=today,
            narrative=tgt.get("narrative") or f"{kind.title()} from {src.receipt_number or src.id}",
            vat_code=None, vat_amount=0, office_code=office_code, created_by=actor,
            source_transaction_id=src.id))
    for sid, amt in debits.items():
        audit.record(session, kind, "Transaction", sid, after={
            "number": group.number, "moved_out": str(Money(amt)),
            "targets": [f"{t.fund_code}/{t.account_reference} {Money(t.amount)}"
                        for t, (s, _, _) in zip(created, pairs) if s.id == sid]},
            reason=reason, actor=actor)
    for t in created:
        audit.record(session, "create", "Transaction", t.id, after={
            "number": group.number, "fund_code": t.fund_code,
            "account_reference": t.account_reference, "amount": str(Money(t.amount)),
            "source_transaction_id": t.source_transaction_id}, reason=reason, actor=actor)
    return group, created


def journal(session: Session, *, transaction_id, targets, reason, actor: str,
            office_code: str | None = None, may_override_stop: bool = False,
            accounting_date=None) -> PostingGroup:
    """Reallocate all or part of a received line to one or more fund/account targets.
    ``accounting_date`` (API): an explicit date, refused (422) in a closed period; by default
    the posting date (today, or the first open period's first day)."""
    try:
        from app.services.receipts import parse_date

        tid = _transaction_id(transaction_id)
        reason = _reason(reason)
        adate = parse_date(accounting_date, field="accounting_date")
        from app.services.validation import date_outside_window

        if adate is not None and (outside := date_outside_window(adate)):
            raise ValidationError(f"accounting_date: {outside}", {"accounting_date": [outside]})
        source = L.lock_transaction(session, tid)
        require_fund(source.fund_code)
        errors: dict[str, list[str]] = {}
        cleaned = _targets(session, targets, errors, may_override_stop=may_override_stop)
        for i, c in enumerate(cleaned):
            if c["fund_code"] == source.fund_code and c["account_reference"] == source.account_reference:
                errors.setdefault(f"targets[{i}].account_reference", []).append(
                    "A target cannot be the source account itself.")
        if errors:
            raise ValidationError("The journal was not posted: " + "; ".join(
                f"{k}: {v[0]}" for k, v in errors.items()), errors)
        total = sum(c["amount"] for c in cleaned)
        available = L.available_amount(session, source)
        if total > available:
            raise ValidationError(
                f"The targets total {Money(total)} but only {Money(available)} is available.",
                {"targets": [f"Total more than the available {Money(available)}."]})
        group, _ = _post_moves(session, "journal", [(source, c["amount"], c) for c in cleaned],
                               actor=actor, reason=reason, office_code=office_code,
                               accounting_date=adate)
        session.commit()
        return group
    except Exception:
        session.rollback()
        raise


def transfer(session: Session, *, reason, actor: str, source_transaction_id=None, targets=None,
             pairs=None, office_code: str | None = None,
             may_override_stop: bool = False) -> PostingGroup:
    """One source to many targets (total ≤ available), or many-to-many in equal pairs.

    pairs: [{"transaction_id", "fund_code", "account_reference", "amount"}] — each pair moves
    amount from its transaction to its target.
    """
    try:
        reason = _reason(reason)
        errors: dict[str, list[str]] = {}
        moves: list[tuple[int, dict]] = []
        if pairs is not None and source_transaction_id is None:
            if not isinstance(pairs, list) or len(pairs) < 1:
                raise ValidationError("Add at least one pair.", {"pairs": ["Add at least one pair."]})
            for i, p in enumerate(pairs):
                if not isinstance(p, dict):
                    errors.setdefault(f"pairs[{i}]", []).append("Each pair must be an object.")
                    continue
                try:
                    sid = _transaction_id(p.get("transaction_id"), f"pairs[{i}].transaction_id")
                except ValidationError as exc:
                    for k, v in exc.errors.items():
                        errors.setdefault(k, []).extend(v)
                    continue
                c = check_line(session, p, f"pairs[{i}]", errors,
                               may_override_stop=may_override_stop, allow_vat=False)
                if c is not None:
                    moves.append((sid, c))
        elif source_transaction_id is not None and pairs is None:
            sid = _transaction_id(source_transaction_id, "source_transaction_id")
            for c in _targets(session, targets, errors, may_override_stop=may_override_stop):
                moves.append((sid, c))
        else:
            raise ValidationError("Give either source_transaction_id and targets, or pairs.",
                                  {"source_transaction_id": ["Give a source, or pairs."]})
        if errors:
            raise ValidationError("The transfer was not posted: " + "; ".join(
                f"{k}: {v[0]}" for k, v in errors.items()), errors)
        # lock every source in id order (no deadlocks), then check availability
        sources = {sid: L.lock_transaction(session, sid) for sid in sorted({m[0] for m in moves})}
        require_fund(*{s.fund_code for s in sources.values()})
        wanted: dict[int, int] = {}
        for sid, c in moves:
            wanted[sid] = wanted.get(sid, 0) + c["amount"]
            src = sources[sid]
            if c["fund_code"] == src.fund_code and c["account_reference"] == src.account_reference:
                errors.setdefault("targets", []).append("A target cannot be its source account.")
        for sid, amt in wanted.items():
            available = L.available_amount(session, sources[sid])
            if amt > available:
                errors.setdefault("amount", []).append(
                    f"Transaction {sid}: {Money(amt)} asked but only {Money(available)} is available.")
        if errors:
            raise ValidationError("The transfer was not posted: " + "; ".join(
                f"{k}: {v[0]}" for k, v in errors.items()), errors)
        group, _ = _post_moves(session, "transfer", [(sources[sid], c["amount"], c) for sid, c in moves],
                               actor=actor, reason=reason, office_code=office_code)
        session.commit()
        return group
    except Exception:
        session.rollback()
        raise


def undo(session: Session, *, group_id, reason, actor: str) -> PostingGroup:
    """Undo a journal or transfer once, by reversal; refused if a target's money has moved on."""
    try:
        gid = _transaction_id(group_id, "id")
        reason = _reason(reason)
        group = session.get(PostingGroup, gid)
        if group is None or group.kind not in ("journal", "transfer"):
            raise NotFound(f"Journal {group_id} does not exist.")
        targets = session.scalars(select(Transaction.id).where(Transaction.posting_group_id == gid)
                                  .order_by(Transaction.id)).all()
        locked = [L.lock_transaction(session, t) for t in targets]
        require_fund(*{t.fund_code for t in locked})
        require_fund(*{session.get(Transaction, t.source_transaction_id).fund_code
                       for t in locked if t.source_transaction_id})
        if L.is_reversed(session, group):
            raise Conflict(f"{group.number} has already been undone.")
        for t in locked:
            if L.available_amount(session, t) != t.amount:
                raise Conflict(f"{group.number} cannot be undone: money on "
                               f"{t.fund_code}/{t.account_reference} has moved on.",
                               {"id": ["A target's money has been journalled, transferred or refunded."]})
        rev = L.reverse_group(session, group, actor=actor, reason=reason)
        sources = {t.source_transaction_id for t in locked if t.source_transaction_id}
        for sid in sorted(sources):
            audit.record(session, "undo", "Transaction", sid, after={
                "number": group.number, "reversal": rev.number}, reason=reason, actor=actor)
        for t in locked:
            audit.record(session, "reverse", "Transaction", t.id, after={
                "number": group.number, "reversal": rev.number}, reason=reason, actor=actor)
        session.commit()
        return rev
    except Exception:
        session.rollback()
        raise


def related(session: Session, transaction: Transaction) -> dict:
    """Journals/transfers out of a transaction, and where it came from, with reversal state."""
    out_groups = session.scalars(
        select(PostingGroup).join(Transaction, Transaction.posting_group_id == PostingGroup.id)
        .where(Transaction.source_transaction_id == transaction.id).distinct()
        .order_by(PostingGroup.id)).all()
    items = []
    for g in out_groups:
        tg = session.scalars(select(Transaction).where(Transaction.posting_group_id == g.id,
                                                       Transaction.source_transaction_id == transaction.id)).all()
        rev = session.scalar(select(PostingGroup).where(PostingGroup.reverses_id == g.id))
        items.append({"group": g, "targets": keep(tg), "reversal": rev})
    source = transaction.source_transaction
    return {"moves_out": items,
            "source": source if source is None or fund_allowed(source.fund_code) else None}
