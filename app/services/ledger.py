"""Double-entry postings: balanced posting groups, reversals, numbers, income rows, balances.

Services take the session and never commit here: the caller's use case commits once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import bindparam, case, exists, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

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
    TransactionNarrative,
)
from app.models.reference import VatCode
from app.services import audit, refcache
from app.services.locking import for_update

BANK = "BANK"
SUSPENSE = "SUSPENSE"
REFUNDS_PAYABLE = "REFUNDS_PAYABLE"
WRITE_OFFS = "WRITE_OFFS"
FUND = "FUND"
# clearing accounts: see app/services/clearing.py
CASH_IN_HAND = "CASH_IN_HAND"
CASH_IN_TRANSIT = "CASH_IN_TRANSIT"
CARD_CLEARING = "CARD_CLEARING"
AGENT_CLEARING = "AGENT_CLEARING"
CASH_VARIANCE = "CASH_VARIANCE"
MIGRATION = "MIGRATION"
CARD_FEES = "CARD_FEES"
BANK_CHARGES = "BANK_CHARGES"

#: Default number prefix per posting-group kind.
PREFIXES = {"receipt": "R", "journal": "J", "transfer": "T", "import": "I", "suspense": "S",
            "allocation": "A", "refund": "F", "refund_payment": "P", "write_off": "W",
            "reversal": "V", "cash_up": "E", "migration": "M", "reconciliation": "B"}

#: fn(session, transaction ids) -> {transaction id: pence reserved against it}
_reservations: list[Callable[[Session, Collection[int]], dict[int, int]]] = []


@dataclass(frozen=True)
class Leg:
    account: str
    amount: int
    fund_code: str | None = None
    account_reference: str | None = None
    transaction_id: int | None = None


def register_reservation(fn: Callable[[Session, Collection[int]], dict[int, int]]):
    """Register fn(session, transaction ids) -> {transaction id: pence reserved against it} (e.g.
    pending refunds; ids with nothing reserved may be left out), one query for any number."""
    if fn not in _reservations:
        _reservations.append(fn)
    return fn


_PREFIX = re.compile(r"^[A-Z][A-Z0-9]{0,9}$")
_sequences_seen: set[tuple[str, str]] = set()
_sequences_lock = threading.Lock()


def take_numbers(session: Session, prefix: str, n: int = 1) -> list[int]:
    """Take ``n`` numbers of ``prefix`` (in increasing order). Unique, never reused; gaps are
    possible (a use case that fails after taking its number does not give it back).

    PostgreSQL: from a sequence per prefix (``ims_number_<prefix>``), which holds no lock to
    commit, so concurrent receipts do not wait for each other's numbers; under concurrency the
    numbers of one call need not be consecutive. SQLite, whose writers take turns anyway: one
    upsert of number_sequence, consecutive.
    """
    prefix = prefix.upper()
    if not _PREFIX.match(prefix):
        raise ValueError(f"Not a number prefix: {prefix!r}")
    if session.get_bind().dialect.name == "postgresql":
        seq = _pg_sequence(session, prefix)
        if n == 1:
            return [session.execute(text(f"SELECT nextval('{seq}')")).scalar_one()]
        return list(session.execute(text(
            f"SELECT nextval('{seq}') FROM generate_series(1, :n)"), {"n": n}).scalars())
    from sqlalchemy.dialects.sqlite import insert as upsert

    table = NumberSequence.__table__
    # one statement, so two use cases taking the first numbers of a new prefix cannot collide
    stmt = upsert(table).values(prefix=prefix, last_value=n)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.prefix],
                                      set_={"last_value": table.c.last_value + n})
    last = session.execute(stmt.returning(table.c.last_value)).scalar_one()
    return list(range(last - n + 1, last + 1))


def _pg_sequence(session: Session, prefix: str) -> str:
    """The prefix's sequence, created on first use in a connection of its own (so the DDL
    neither waits for nor rolls back with the caller's transaction), starting after the last
    number number_sequence issued before sequences were used."""
    bind = session.get_bind()
    name = f"ims_number_{prefix.lower()}"
    key = (str(bind.url), name)
    if key in _sequences_seen:
        return name
    with _sequences_lock:
        with bind.connect() as conn:
            exists = conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()
            if exists is None:
                last = conn.execute(select(NumberSequence.last_value).where(
                    NumberSequence.prefix == prefix)).scalar() or 0
                try:
                    conn.execute(text(f"CREATE SEQUENCE IF NOT EXISTS {name} "
                                      f"START WITH {int(last) + 1}"))
                    conn.commit()
                except DBAPIError:  # another process created it at the same moment
                    conn.rollback()
        _sequences_seen.add(key)
    return name


def forget_sequences() -> None:
    """Forget which sequences exist (tests that drop and recreate the schema)."""
    with _sequences_lock:
        _sequences_seen.clear()


def next_number(session: Session, prefix: str) -> str:
    """The next number for prefix, e.g. "R000124"."""
    prefix = prefix.upper()
    return f"{prefix}{take_numbers(session, prefix)[0]:06d}"


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
               reverses: PostingGroup | None = None, accounting_date: date | None = None,
               strict_date: bool = False) -> PostingGroup:
    """Post one balanced group of legs. Flushes and audits; the caller commits.

    Every posting of the IMS but the imports' bulk writers (which call periods.resolve_many
    themselves) comes through here, so this is where closed periods are enforced:
    ``accounting_date`` (the transaction date for receipts, default today's date: the posting
    date of a correction) in a closed period is posted on the first day of the first open
    period (group.accounting_date; group.requested_accounting_date keeps the date asked for),
    or, with ``strict_date`` (an API request that named the date), refused with a 422. The
    period stays locked against closing until the caller commits (app/services/periods.py)."""
    legs = list(legs)
    group = _new_group(session, kind, legs, actor=actor, office_code=office_code, reason=reason,
                       import_id=import_id, number=number, reverses=reverses,
                       accounting_date=accounting_date, strict_date=strict_date)
    session.flush()
    _write_lines(session, group, legs)
    _audit_group(session, group, legs, import_id=import_id, reverses=reverses, reason=reason,
                 actor=actor)
    return group


def _new_group(session: Session, kind: str, legs: list[Leg], *, actor: str,
               office_code: str | None, reason: str | None = None, import_id: int | None = None,
               number: str | None = None, reverses: PostingGroup | None = None,
               accounting_date: date | None = None, strict_date: bool = False,
               add: bool = True) -> PostingGroup:
    """The group of ``legs`` (checked), in its period, numbered, added to the session (not
    flushed; not added with ``add=False``)."""
    from app.services import periods

    if kind not in GROUP_KINDS:
        raise ValidationError(f"Unknown posting kind {kind!r}.", {"kind": ["Unknown kind."]})
    _check_legs(legs)
    wanted = accounting_date or periods.today()
    if number is None and session.get_bind().dialect.name == "postgresql":
        # the period's lock and state and the group's number in one round trip
        prefix = PREFIXES[kind]
        used, n = periods.resolve_numbered(session, wanted, _pg_sequence(session, prefix),
                                           strict=strict_date)
        number = f"{prefix}{n:06d}"
    else:
        used = periods.resolve(session, wanted, strict=strict_date)
    group = PostingGroup(kind=kind, number=number or next_number(session, PREFIXES[kind]),
                         created_by=actor, office_code=office_code, reason=reason,
                         import_id=import_id, reverses_id=reverses.id if reverses else None,
                         accounting_date=used)
    group.requested_accounting_date = wanted
    if add:
        session.add(group)
    else:
        from app.models.base import utcnow

        group.created_at = utcnow()
    return group


_LINE_COLUMNS = ("group_id", "account", "amount", "fund_code", "account_reference",
                 "transaction_id")
#: (table, columns, rows, returning, dialect) -> (SQL, parameters' order or None for named,
#: bind processors) of a multi-row INSERT, or None where it goes SQLAlchemy's way
_DRIVER_INSERTS: dict[tuple, tuple | None] = {}


def _driver_insert(session: Session, table, columns: tuple[str, ...], rows: list[dict], *,
                   returning: bool = False):
    """INSERT ``rows`` (dicts of ``columns``) into ``table`` in one statement whose SQL is
    compiled once per database and size and run through the driver; with ``returning``, the new
    ids in the rows' order. SQLAlchemy keeps no compiled form of a multi-row VALUES (it has no
    cache key), and even a cached statement costs a good part of its run in SQLAlchemy's
    execution context, which these statements, written on every receipt, do without. Returns
    False when the statement must go SQLAlchemy's way (RETURNING of several rows on a database
    but PostgreSQL, whose sequence numbers the rows in their order; more than 100 rows)."""
    conn = session.connection()
    dialect = conn.dialect
    key = (table.name, columns, len(rows), returning, dialect.name)
    found = _DRIVER_INSERTS.get(key, False)
    if found is False:
        found = None
        if len(rows) <= 100 and (not returning or len(rows) == 1
                                 or dialect.name == "postgresql"):
            stmt = table.insert().values([
                {c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns}
                for i in range(len(rows))])
            if returning:
                stmt = stmt.returning(table.c.id)
            compiled = stmt.compile(dialect=dialect)
            found = (compiled.string,
                     tuple(compiled.positiontup) if compiled.positional else None,
                     dict(compiled._bind_processors))
        _DRIVER_INSERTS[key] = found
    if found is None:
        return False
    sql, order, processors = found
    params = {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in columns}
    for name, process in processors.items():
        params[name] = process(params[name])
    result = conn.exec_driver_sql(sql, tuple(params[k] for k in order) if order is not None
                                  else params)
    if returning:
        # ids from the table's sequence, taken in the rows' order (the order RETURNING lists
        # them in is not promised)
        return sorted(result.scalars().all())
    return None


def _write_lines(session: Session, group: PostingGroup, legs: list[Leg]) -> None:
    # one statement for all the legs: the database checks each statement's groups balance
    rows = [{"group_id": group.id, "account": leg.account, "amount": leg.amount,
             "fund_code": leg.fund_code, "account_reference": leg.account_reference,
             "transaction_id": leg.transaction_id} for leg in legs]
    if _driver_insert(session, LedgerLine.__table__, _LINE_COLUMNS, rows) is False:
        # a large group: a statement of its own
        session.execute(LedgerLine.__table__.insert().values(rows))
    session.expire(group, ["lines"])


def _audit_group(session: Session, group: PostingGroup, legs: list[Leg], *,
                 import_id: int | None, reverses: PostingGroup | None, reason: str | None,
                 actor: str) -> None:
    used, wanted = group.accounting_date, group.requested_accounting_date
    audit.record(session, "post", "PostingGroup", group.id, after={
        "kind": group.kind, "number": group.number, "office_code": group.office_code,
        "import_id": import_id, "accounting_date": used.isoformat(),
        "moved_from_closed_period": wanted.isoformat() if used != wanted else None,
        "reverses": reverses.number if reverses else None,
        "legs": [f"{l.account}:{l.fund_code or ''}:{l.account_reference or ''}:{Money(l.amount)}"
                 for l in legs]}, reason=reason, actor=actor)


def post_income_group(session: Session, kind: str, legs: Iterable[Leg], income: list[dict], *,
                      actor: str, office_code: str | None = None,
                      accounting_date: date | None = None, strict_date: bool = False
                      ) -> tuple[PostingGroup, list[Transaction]]:
    """``post_group`` for a group whose credit legs record income (a receipt): ``income[i]`` is
    ``record_income``'s keyword arguments (but ``group``) for the line credited by the leg at
    ``income[i]["leg"]``, which must credit that fund and reference that amount. The same rows
    and audit event as post_group then record_income per line, in fewer statements: the group,
    then its transactions in one INSERT, then every ledger line in one INSERT, each credit line
    naming its transaction from the start (was: per line an INSERT, a SELECT of its ledger line
    and an UPDATE of it). Returns (group, transactions in income's order), persistent objects
    of the session. Flushes and audits; the caller commits."""
    legs = list(legs)
    group = _new_group(session, kind, legs, actor=actor, office_code=office_code,
                       accounting_date=accounting_date, strict_date=strict_date, add=False)
    rates = _vat_rates(session, {row["vat_code"] for row in income
                                 if row.get("vat_code") and row.get("vat_amount") is None})
    rows = []
    for row in income:
        row = dict(row)
        leg = legs[row.pop("leg")]
        amount = row["amount"]
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValidationError("Income amount must be more than zero.",
                                  {"amount": ["Must be more than zero."]})
        if (leg.account != FUND or leg.amount != -amount or leg.fund_code != row["fund_code"]
                or leg.account_reference != row.get("account_reference")
                or leg.transaction_id is not None):
            raise ValueError("An income row must match the fund leg that credits it.")
        rows.append(_income_values(row, group, rates))
    # the group, then its transactions (one INSERT for them all), as Core statements: the rows
    # join the session as persistent objects holding the values written (no flush to plan)
    session.flush()  # whatever the caller left pending goes first, as a flush would order it
    group_values = {c: getattr(group, c) for c in _GROUP_COLUMNS}
    ids = _driver_insert(session, PostingGroup.__table__, _GROUP_COLUMNS, [group_values],
                         returning=True)
    group.id = ids[0] if ids is not False else \
        session.execute(_INSERT_GROUP, group_values).scalar_one()
    _attach(session, group)
    txns = []
    if rows:
        # a narrative goes to transaction_narrative (erasable), not into the append-only row
        narratives = [r.pop("narrative", None) or None for r in rows]
        for r in rows:
            r["posting_group_id"] = group.id
        ids = _driver_insert(session, Transaction.__table__, _INCOME_COLUMNS, rows,
                             returning=True)
        if ids is False:
            ids = session.execute(_INSERT_INCOME, rows).scalars().all()
        for r, new_id in zip(rows, ids, strict=True):
            txn = Transaction(id=new_id, **r)
            _attach(session, txn)
            txns.append(txn)
        _write_narratives(session, txns, narratives)
    by_leg = {}
    for row, txn in zip(income, txns):
        by_leg[row["leg"]] = txn.id
    legs = [Leg(l.account, l.amount, l.fund_code, l.account_reference, by_leg[i])
            if i in by_leg else l for i, l in enumerate(legs)]
    _write_lines(session, group, legs)
    _audit_group(session, group, legs, import_id=None, reverses=None, reason=None, actor=actor)
    return group, txns


def _vat_rates(session: Session, codes: set[str]) -> dict:
    rates = {}
    for code in sorted(codes):
        row = refcache.vat(session, code)
        if row is None:
            raise ValidationError(f"Unknown VAT code {code}.", {"vat_code": ["Unknown VAT code."]})
        rates[code] = row.rate
    return rates


_GROUP_COLUMNS = ("kind", "number", "created_at", "created_by", "office_code", "reason",
                  "import_id", "reverses_id", "accounting_date")
_INCOME_COLUMNS = ("receipt_number", "fund_code", "account_reference", "amount", "vat_code",
                   "vat_amount", "payment_method_code", "transaction_date", "external_reference",
                   "office_code", "created_by", "created_at", "import_id",
                   "source_transaction_id", "posting_group_id")
_INSERT_GROUP = PostingGroup.__table__.insert().returning(PostingGroup.__table__.c.id)
_INSERT_INCOME = Transaction.__table__.insert().returning(Transaction.__table__.c.id,
                                                          sort_by_parameter_order=True)


def _attach(session: Session, obj) -> None:
    """``obj``, whose row was just inserted with the values it holds, into the session as a
    persistent object (as after a flush; attributes not set load when first read)."""
    from sqlalchemy.orm import make_transient_to_detached

    make_transient_to_detached(obj)
    session.add(obj)


def _income_values(row: dict, group: PostingGroup, rates: dict) -> dict:
    """The income_transaction row record_income writes for its keyword arguments (VAT from
    ``rates``)."""
    from app.models.base import utcnow

    amount, vat_code, vat_amount = row["amount"], row.get("vat_code"), row.get("vat_amount")
    if vat_amount is None:
        vat_amount = vat_of(Money(amount), rates[vat_code]).pence if vat_code else 0
    office_code = row.get("office_code")
    return dict(receipt_number=group.number, fund_code=row["fund_code"],
                account_reference=row.get("account_reference"), amount=amount,
                vat_code=vat_code, vat_amount=vat_amount,
                payment_method_code=row["payment_method_code"],
                narrative=row.get("narrative"), transaction_date=row["transaction_date"],
                external_reference=row.get("external_reference"),
                office_code=office_code if office_code is not None else group.office_code,
                created_by=row["created_by"], created_at=utcnow(), import_id=group.import_id,
                source_transaction_id=row.get("source_transaction_id"))


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


def moved_out_of(session: Session, transaction_ids: Collection[int]) -> dict[int, int]:
    """Pence journalled or transferred out of each transaction and not reversed (ids with none
    left out), in one query."""
    if not transaction_ids:
        return {}
    rev = aliased(PostingGroup)
    return {tid: int(pence) for tid, pence in session.execute(
        select(Transaction.source_transaction_id, func.sum(Transaction.amount))
        .join(PostingGroup, PostingGroup.id == Transaction.posting_group_id)
        .where(Transaction.source_transaction_id.in_(list(transaction_ids)),
               ~exists(select(rev.id).where(rev.reverses_id == PostingGroup.id)))
        .group_by(Transaction.source_transaction_id))}


def moved_out(session: Session, transaction_id: int) -> int:
    """Pence journalled or transferred out of a transaction and not reversed."""
    return moved_out_of(session, [transaction_id]).get(transaction_id, 0)


def reserved_against(session: Session, transaction_ids: Collection[int]) -> dict[int, int]:
    """Pence reserved against each transaction by every registered reservation (one query each)."""
    out: dict[int, int] = {}
    for fn in _reservations:
        for tid, pence in fn(session, transaction_ids).items():
            out[tid] = out.get(tid, 0) + int(pence or 0)
    return out


def reserved(session: Session, transaction_id: int) -> int:
    return reserved_against(session, [transaction_id]).get(transaction_id, 0)


def available_amounts(session: Session, transactions: Collection[Transaction]) -> dict[int, int]:
    """Each transaction's available amount (available_amount) by id, in a query per part for any
    number of transactions: a page of 100 search results costs four queries, not 400."""
    return _availability(session, transactions)[0]


def _availability(session: Session, transactions: Collection[Transaction]
                  ) -> tuple[dict[int, int], dict[int, int]]:
    """(available amount by id, pence reserved by id: ids with none left out)."""
    if not transactions:
        return {}, {}
    gids = {t.posting_group_id for t in transactions}
    reversed_groups = set(session.scalars(select(PostingGroup.reverses_id).where(
        PostingGroup.reverses_id.in_(gids))))
    ids = [t.id for t in transactions if t.posting_group_id not in reversed_groups]
    out, held = moved_out_of(session, ids), reserved_against(session, [t.id for t in transactions])
    return ({t.id: 0 if t.posting_group_id in reversed_groups
             else t.amount - out.get(t.id, 0) - held.get(t.id, 0) for t in transactions}, held)


def available_amount(session: Session, transaction: Transaction) -> int:
    """amount − journals/transfers out (not reversed) − reservations (e.g. refunds); 0 if reversed."""
    return available_amounts(session, [transaction])[transaction.id]


def availability(session: Session, transaction: Transaction) -> tuple[int, int]:
    """(available_amount, reserved) of one transaction, each part read once (the transaction's
    page shows both)."""
    available, held = _availability(session, [transaction])
    return available[transaction.id], held.get(transaction.id, 0)


_INSERT_NARRATIVE = insert(TransactionNarrative.__table__)
_NARRATIVE_COLUMNS = ("transaction_id", "narrative", "fund_code", "transaction_date")


def _write_narratives(session: Session, txns: list[Transaction], narratives: list) -> None:
    """Each transaction's narrative (None or empty: none) into transaction_narrative, erasable,
    not into the append-only row, in one statement; the objects know theirs without a query."""
    rows = []
    for txn, narrative in zip(txns, narratives, strict=True):
        narrative = narrative or None
        set_committed_value(txn, "narrative", narrative)
        if narrative:
            rows.append({"transaction_id": txn.id, "narrative": narrative,
                         "fund_code": txn.fund_code, "transaction_date": txn.transaction_date})
    if rows and _driver_insert(session, TransactionNarrative.__table__, _NARRATIVE_COLUMNS,
                               rows) is False:
        session.execute(_INSERT_NARRATIVE, rows)


def record_income(session: Session, *, group: PostingGroup, fund_code: str,
                  account_reference: str | None, amount: int, payment_method_code: str,
                  transaction_date: date, narrative: str | None = None,
                  vat_code: str | None = None, external_reference: str | None = None,
                  office_code: str | None = None, created_by: str,
                  source_transaction_id: int | None = None,
                  vat_amount: int | None = None) -> Transaction:
    """Record one line of income posted in group; links the group's matching credit line to it.
    Its receipt number and import are its group's (searches find them through the group). A
    narrative goes to transaction_narrative (erasable), not into the append-only row."""
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
                      transaction_date=transaction_date,
                      external_reference=external_reference,
                      office_code=office_code if office_code is not None else group.office_code,
                      created_by=created_by, import_id=group.import_id,
                      posting_group_id=group.id, source_transaction_id=source_transaction_id)
    session.add(txn)
    session.flush()
    _write_narratives(session, [txn], [narrative])
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
