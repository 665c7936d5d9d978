"""Reversing a whole import: every posting group it made gets its reversal, its untouched
suspense items are withdrawn; refused while any of its money has been spent or is held since
(allocated, written off, journalled, transferred or refunded, or awaiting such an approval)."""

from __future__ import annotations

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.money import Money
from app.models.base import utcnow
from app.models.imports import ImportBatch
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.refund import RESERVING, Refund
from app.models.suspense import SuspenseItem
from app.models.suspense_work import WRITE_OFF_HOLDING, WriteOff
from app.services import audit
from app.services import ledger as L
from app.services.imports.batches import set_status
from app.services.locking import for_update

#: posting groups reversed per statement
GROUPS_PER_STATEMENT = 2500


def _reserve_ids(session: Session, table, n: int) -> list[int]:
    """n fresh primary keys for table, so rows can be bulk-inserted without RETURNING.

    PostgreSQL: from the column's sequence. SQLite: after max(id); the caller has already
    written in this transaction, so it holds SQLite's single write lock.
    """
    if n <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return list(session.execute(text(
            "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": n}).scalars())
    top = session.execute(select(func.max(table.c.id))).scalar() or 0
    return list(range(top + 1, top + n + 1))


_PROCESSORS: dict = {}


def _bulk_insert(session: Session, table, rows: list[dict]) -> None:
    """executemany straight to the driver (no per-row SQLAlchemy parameter building).

    Values pass through each column type's bind processor (dates and UTC datetimes on SQLite)
    so what lands is exactly what the ORM would have written.
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    cols = list(rows[0].keys())
    key = (table.name, dialect.name, tuple(cols))
    if key not in _PROCESSORS:
        procs = [table.c[c].type._cached_bind_processor(dialect) for c in cols]
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = (f"INSERT INTO {table.name} ({', '.join(cols)}) "
               f"VALUES ({', '.join([mark] * len(cols))})")
        _PROCESSORS[key] = (sql, [(i, p) for i, p in enumerate(procs) if p is not None])
    sql, procs = _PROCESSORS[key]
    if dialect.name == "postgresql":
        # COPY: one round trip for the whole chunk, inside the session's transaction
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur, cur.copy(
                f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy:
            for r in rows:
                values = [r[c] for c in cols]
                for i, p in procs:
                    if values[i] is not None:
                        values[i] = p(values[i])
                copy.write_row(values)
        return
    data = []
    for r in rows:
        values = [r[c] for c in cols]
        for i, p in procs:
            if values[i] is not None:
                values[i] = p(values[i])
        data.append(tuple(values))
    conn.exec_driver_sql(sql, data)


def reverse_import(session: Session, batch_id: int, *, actor: str, reason: str) -> ImportBatch:
    """Reverse every posting of the import and withdraw its untouched suspense items.

    Refused (Conflict, naming them) if any suspense item was allocated or written off, or any
    imported transaction has been journalled, transferred or refunded since.
    """
    if not reason or not reason.strip():
        raise ValidationError("Give a reason for reversing the import.",
                              {"reason": ["A reason is required."]})
    batch = session.scalar(for_update(session, select(ImportBatch).where(
        ImportBatch.id == batch_id)).execution_options(populate_existing=True))
    if batch is None:
        raise NotFound(f"No import {batch_id}.")
    if batch.status != "succeeded":
        raise Conflict(f"Only a succeeded import can be reversed (this one is {batch.status}).")
    st = SuspenseItem.__table__
    # Whatever spends this import's money (journals, refunds, write-offs, allocations) first locks
    # the transaction or suspense item it spends from: lock them all before checking that none was.
    session.execute(for_update(session, select(Transaction.id).where(
        Transaction.of_import(batch.id)))).all()
    session.execute(for_update(session, select(st.c.id).where(st.c.import_id == batch.id))).all()
    touched = session.execute(select(st.c.id, st.c.status).where(
        st.c.import_id == batch.id, st.c.status != "unallocated").limit(20)).all()
    touched_ids = [f"{i} ({s})" for i, s in touched]
    gt, lt, tt = PostingGroup.__table__, LedgerLine.__table__, Transaction.__table__
    own = select(gt.c.id).where(gt.c.import_id == batch.id, gt.c.kind.in_(("import", "suspense")))
    # allocations etc. post against the suspense item's group or the transactions
    moved = session.execute(select(tt.c.id).join(lt, lt.c.transaction_id == tt.c.id).where(
        Transaction.of_import(batch.id), lt.c.group_id != tt.c.posting_group_id)
        .limit(20)).scalars().all()
    own_txns = select(tt.c.id).where(Transaction.of_import(batch.id))
    sourced = session.execute(select(tt.c.source_transaction_id).where(
        tt.c.source_transaction_id.in_(own_txns)).limit(20)).scalars().all()
    # refunds and write-offs awaiting approval hold money that has no ledger lines yet
    held = session.execute(select(Refund.transaction_id).where(
        Refund.transaction_id.in_(own_txns), Refund.status.in_([s.value for s in RESERVING]))
        .union(select(WriteOff.transaction_id).where(
            WriteOff.transaction_id.in_(own_txns), WriteOff.status.in_(WRITE_OFF_HOLDING)))
        .limit(20)).scalars().all()
    from app.models.suspense import REMAINING_AMOUNT

    if REMAINING_AMOUNT[0] is not None:
        for item in session.scalars(select(SuspenseItem).where(
                SuspenseItem.import_id == batch.id, SuspenseItem.status == "unallocated")):
            if item.remaining_amount != item.amount:
                touched_ids.append(f"{item.id} (part allocated)")
    from app.models.reconciliation import BankStatement, StatementLine

    reconciled = session.execute(select(StatementLine.id).join(
        BankStatement, BankStatement.id == StatementLine.statement_id).where(
        BankStatement.import_id == batch.id, StatementLine.match_id.is_not(None))
        .limit(20)).scalars().all()
    problems = []
    if reconciled:
        problems.append("statement line(s) matched in the bank reconciliation (unmatch them "
                        "first): " + ", ".join(str(x) for x in reconciled))
    if touched_ids:
        problems.append("suspense item(s) already allocated or written off: "
                        + ", ".join(str(x) for x in touched_ids))
    if moved or sourced or held:
        problems.append("transaction(s) journalled, transferred, refunded or written off since: "
                        + ", ".join(str(x) for x in sorted(set(moved) | set(sourced) | set(held))))
    if problems:
        raise Conflict("The import cannot be reversed: " + "; ".join(problems) + ".",
                       {"import": problems})
    already = session.scalar(select(func.count()).select_from(gt).where(
        gt.c.reverses_id.in_(own)))
    if already:
        raise Conflict("Some of this import's postings have already been reversed.")
    now = utcnow()
    group_ids = session.execute(own.order_by(gt.c.id)).scalars().all()
    for i in range(0, len(group_ids), GROUPS_PER_STATEMENT):
        part = group_ids[i:i + GROUPS_PER_STATEMENT]
        numbers = L.take_numbers(session, "V", len(part))
        new_ids = _reserve_ids(session, gt, len(part))
        _bulk_insert(session, gt, [
            {"id": new_ids[j], "kind": "reversal", "number": f"V{numbers[j]:06d}",
             "created_at": now, "created_by": actor, "office_code": batch.office_code,
             "reason": reason.strip(), "import_id": batch.id, "reverses_id": gid}
            for j, gid in enumerate(part)])
        mapping = dict(zip(part, new_ids))
        lines = [{"group_id": mapping[g], "account": a, "fund_code": f, "account_reference": r,
                  "amount": -amt, "transaction_id": t}
                 for g, a, f, r, amt, t in session.execute(
                     select(lt.c.group_id, lt.c.account, lt.c.fund_code, lt.c.account_reference,
                            lt.c.amount, lt.c.transaction_id).where(lt.c.group_id.in_(part))
                     .order_by(lt.c.id))]
        if sum(x["amount"] for x in lines) != 0:
            raise ValidationError("Internal error: the reversal does not balance.")
        _bulk_insert(session, lt, lines)
    withdrawn = session.execute(update(st).where(st.c.import_id == batch.id,
                                                 st.c.status == "unallocated")
                                .values(status="withdrawn")).rowcount
    batch.reversed_by = actor
    batch.reversal_reason = reason.strip()[:500]
    audit.record(session, "reverse", "ImportBatch", batch.id, before={"status": "succeeded"},
                 after={"groups_reversed": len(group_ids), "suspense_withdrawn": withdrawn,
                        "amount": str(Money(batch.total_amount))}, reason=reason.strip(),
                 actor=actor)
    set_status(session, batch, "reversed", actor, reason.strip())
    batch.active_sha256 = None
    session.commit()
    return batch
