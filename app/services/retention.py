"""Retention of personal data: anonymising records past their retention period, legal holds, and
the subject-access report.

Each kind of record (KINDS) keeps its personal values for a number of years after the end of the
financial year (1 April–31 March) it is dated in: the setting ``retention_years_<kind>``, six by
default. `ims tick` (and an Administrator, from the retention page or the API) anonymises what is
due: the personal values are erased (the record's columns set to NULL, an account holder's name
to ANONYMISED_NAME, a payment's narrative deleted from ``transaction_narrative``, the audit
trail's personal values in ``personal_data`` erased), while amounts, references, dates and the
ledger stay as they are: nothing updates an income row (append-only, with no exception). One
audit event records that it happened, with counts per kind and no personal data.

Records matching a legal hold in force (an account reference, or a person's name) are skipped.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field

from sqlalchemy import Boolean, and_, delete, exists, false, func, or_, select, update
from sqlalchemy.orm import Session

from app.domain.errors import NotFound, ValidationError
from app.domain.i18n import N_
from app.models.accounts import AccountSyncChange
from app.models.audit import AuditEvent
from app.models.card_payment import FINAL_STATUSES, CardPayment, PaymentRequest
from app.models.ledger import Transaction, TransactionNarrative
from app.models.personal import HOLD_MATCHES, LegalHold
from app.models.reference import AccountHolder, Setting
from app.models.refund import Refund
from app.models.suspense import SuspenseItem
from app.services import audit
from app.services import personal as P

DEFAULT_YEARS = 6
SETTING_PREFIX = "retention_years_"
#: an anonymised account holder's name (the column is required)
ANONYMISED_NAME = "—"
#: at most this many records of each kind per run (`ims tick` runs again next time)
BATCH = 2000
#: fields of an account-sync change list entry that are personal
SYNC_PERSONAL = ("name", "address", "postcode")


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    model: type
    #: the date the retention period runs from (a date or a moment)
    date_col: object
    reference_col: object
    #: columns holding personal values, and what anonymising sets them to (an income
    #: transaction's narrative is not a column of its row: see NARRATIVE)
    personal: dict
    #: the audit entity whose personal_data rows are erased with the record (None: none)
    audit_entity: str | None = None
    #: extra condition: only such records are ever anonymised (an account holder: closed)
    only: object = None

    def has_personal(self):
        if self.key == "transaction":
            return exists(select(NARRATIVE.transaction_id).where(
                NARRATIVE.transaction_id == Transaction.id))
        cols = [getattr(self.model, c) for c in self.personal]
        if self.key == "account_holder":
            return self.model.name != ANONYMISED_NAME
        return or_(*[c.is_not(None) for c in cols])


#: an income transaction's narrative, kept in a table of its own: anonymising deletes the row
#: (the income row is append-only; the ledger and the audit chain never held the narrative)
NARRATIVE = TransactionNarrative


KINDS: dict[str, Kind] = {k.key: k for k in (
    Kind("transaction", N_("Income transactions (narratives)"), Transaction,
         Transaction.transaction_date, Transaction.account_reference, {"narrative": None}),
    Kind("suspense_item", N_("Suspense items (narratives)"), SuspenseItem,
         SuspenseItem.transaction_date, SuspenseItem.reference_text, {"narrative": None}),
    # refunds, card payments and payment requests once finished only (a refund still to be
    # paid needs its payee's bank details, however old)
    Kind("refund", N_("Refunds (payer, payee and bank details)"), Refund, Refund.requested_at,
         None, {"payer_name": None, "payee_name": None, "sort_code": None,
                "account_number": None}, "Refund",
         only=Refund.status.in_(("paid", "rejected", "failed"))),
    Kind("card_payment", N_("Card payments (payer's name, email and address)"), CardPayment,
         CardPayment.created_at, None,
         {"payer_name": None, "payer_email": None, "payer_address": None}, "CardPayment",
         only=CardPayment.status.in_(FINAL_STATUSES)),
    Kind("payment_request", N_("Payment requests (name and email)"), PaymentRequest,
         PaymentRequest.created_at, PaymentRequest.caller_reference,
         {"name": None, "email": None}, "PaymentRequest",
         only=PaymentRequest.status.in_(FINAL_STATUSES)),
    Kind("account_holder", N_("Closed account holders (name, address, postcode)"),
         AccountHolder, AccountHolder.closed_at, AccountHolder.account_reference,
         {"name": ANONYMISED_NAME, "address": None, "postcode": None, "phonetic_key": None,
          "stop_message": None}, "AccountHolder", only=AccountHolder.closed_at.is_not(None)),
)}


# --------------------------------------------------------------------------- periods

def years(session: Session, kind: str) -> int:
    raw = session.scalar(select(Setting.value).where(Setting.key == SETTING_PREFIX + kind))
    try:
        value = int(raw) if raw not in (None, "") else DEFAULT_YEARS
    except ValueError:
        value = DEFAULT_YEARS
    return max(value, 1)


def financial_year_end(day: dt.date) -> dt.date:
    """31 March ending the financial year ``day`` is in."""
    return dt.date(day.year if day.month <= 3 else day.year + 1, 3, 31)


def cutoff(today: dt.date, n_years: int) -> dt.date:
    """Records dated on or before this day are past retention on ``today``: their financial
    year ended ``n_years`` years or more before the last 31 March before today."""
    last_end = dt.date(today.year, 3, 31) if today > dt.date(today.year, 3, 31) \
        else dt.date(today.year - 1, 3, 31)
    return dt.date(last_end.year - n_years, 3, 31)


def _dated_on_or_before(kind: Kind, day: dt.date):
    col = kind.date_col
    from sqlalchemy import Date

    if isinstance(col.type, Date):
        return col <= day
    # a moment: before the start of the next day (UTC)
    return col < dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min,
                                     tzinfo=dt.timezone.utc)


# --------------------------------------------------------------------------- legal holds

def active_holds(session: Session) -> list[LegalHold]:
    return list(session.scalars(select(LegalHold).where(LegalHold.released_at.is_(None))
                                .order_by(LegalHold.id)))


def all_holds(session: Session) -> list[LegalHold]:
    return list(session.scalars(select(LegalHold).order_by(LegalHold.released_at.is_not(None),
                                                           LegalHold.id.desc()).limit(500)))


def _contains(col, text: str):
    return func.lower(col).contains(text.lower(), autoescape=True)


def _items_mention(col, reference: str):
    """A JSON items column (card payments, payment requests) names this account reference."""
    return col.contains(f'"{reference}"', autoescape=True)


def _matches_reference(kind: Kind, reference: str):
    m = kind.model
    ref = reference.strip().upper()
    if kind.key == "refund":
        return m.transaction_id.in_(select(Transaction.id).where(
            Transaction.account_reference == ref))
    if kind.key in ("card_payment", "payment_request"):
        cond = _items_mention(m.items_json, ref)
        return or_(cond, m.caller_reference == reference.strip()) \
            if kind.key == "payment_request" else cond
    return func.upper(kind.reference_col) == ref


def _matches_person(kind: Kind, name: str):
    if kind.key == "transaction":
        return exists(select(NARRATIVE.transaction_id).where(
            NARRATIVE.transaction_id == Transaction.id, _contains(NARRATIVE.narrative, name)))
    cols = [getattr(kind.model, c) for c in kind.personal if c not in ("phonetic_key",
                                                                       "sort_code",
                                                                       "account_number")]
    return or_(*[_contains(c, name) for c in cols])


def _held(kind: Kind, holds: list[LegalHold]):
    conds = [(_matches_reference(kind, h.value) if h.match == "reference"
              else _matches_person(kind, h.value)) for h in holds]
    # NULL columns make a condition NULL, and NOT NULL is not true: held is never NULL
    return func.coalesce(or_(*conds), false(), type_=Boolean) if conds else false()


def place_hold(session: Session, *, match: str, value: str, reason: str, actor: str) -> LegalHold:
    errors = {}
    if match not in HOLD_MATCHES:
        errors["match"] = ["Choose reference or person."]
    value = (value or "").strip() if isinstance(value, str) else ""
    if len(value) < 2 or len(value) > 200:
        errors["value"] = ["Give a reference or name of 2 to 200 characters."]
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > 2000:
        errors["reason"] = ["Give the reason for the hold (at most 2000 characters)."]
    if errors:
        raise ValidationError("Not saved: " + "; ".join(f"{k}: {v[0]}" for k, v in errors.items()),
                              errors)
    hold = LegalHold(match=match, value=value, reason=reason, created_by=actor)
    session.add(hold)
    session.flush()
    audit.record(session, "legal_hold.place", "LegalHold", hold.id,
                 after={"match": match, "value": value}, reason=reason, actor=actor)
    session.commit()
    return hold


def release_hold(session: Session, hold_id, *, actor: str) -> LegalHold:
    try:
        hold = session.get(LegalHold, int(hold_id))
    except (TypeError, ValueError):
        hold = None
    if hold is None:
        raise NotFound("No such legal hold.")
    if hold.released_at is not None:
        raise ValidationError("This legal hold was already released.",
                              {"hold": ["Already released."]})
    hold.released_at = dt.datetime.now(dt.timezone.utc)
    hold.released_by = actor
    audit.record(session, "legal_hold.release", "LegalHold", hold.id,
                 before={"released": False}, after={"released": True}, actor=actor)
    session.commit()
    return hold


# --------------------------------------------------------------------------- what is due

@dataclass
class KindStatus:
    key: str
    label: str
    years: int
    cutoff: dt.date
    due: int = 0
    held: int = 0
    sample: list[dict] = field(default_factory=list)
    held_sample: list[dict] = field(default_factory=list)
    anonymised: int = 0


@dataclass
class Plan:
    today: dt.date
    kinds: list[KindStatus]
    holds: int

    @property
    def due(self) -> int:
        return sum(k.due for k in self.kinds)

    @property
    def held(self) -> int:
        return sum(k.held for k in self.kinds)

    def as_dict(self) -> dict:
        return {"today": self.today.isoformat(), "due": self.due, "held": self.held,
                "holds_in_force": self.holds,
                "kinds": [{"kind": k.key, "years": k.years, "cutoff": k.cutoff.isoformat(),
                           "due": k.due, "held": k.held, "anonymised": k.anonymised,
                           "sample": k.sample, "held_sample": k.held_sample}
                          for k in self.kinds]}


def _base(kind: Kind, day: dt.date):
    conds = [_dated_on_or_before(kind, day), kind.has_personal()]
    if kind.only is not None:
        conds.append(kind.only)
    return and_(*conds)


def _row(kind: Kind, r) -> dict:
    when = r.date
    return {"id": r.id, "reference": r.reference,
            "date": when.isoformat() if isinstance(when, (dt.date, dt.datetime)) else None}


def _reference_expr(kind: Kind):
    if kind.key == "refund":
        return select(Transaction.account_reference).where(
            Transaction.id == Refund.transaction_id).scalar_subquery()
    if kind.key == "card_payment":
        return CardPayment.receipt_number
    return kind.reference_col


def _select(kind: Kind, where, limit: int):
    m = kind.model
    return (select(m.id.label("id"), _reference_expr(kind).label("reference"),
                   kind.date_col.label("date")).where(where).order_by(m.id).limit(limit))


def plan(session: Session, today: dt.date | None = None, sample: int = 20) -> Plan:
    """What is due for anonymisation now and what is held (reads only)."""
    today = today or dt.date.today()
    holds = active_holds(session)
    out = []
    for kind in KINDS.values():
        n = years(session, kind.key)
        day = cutoff(today, n)
        base = _base(kind, day)
        held = _held(kind, holds)
        st = KindStatus(kind.key, kind.label, n, day)
        count = select(func.count()).select_from(kind.model)
        st.due = session.scalar(count.where(base, ~held)) or 0
        st.held = session.scalar(count.where(base, held)) or 0 if holds else 0
        if sample:
            st.sample = [_row(kind, r) for r in session.execute(
                _select(kind, and_(base, ~held), sample))]
            if st.held:
                st.held_sample = [_row(kind, r) for r in session.execute(
                    _select(kind, and_(base, held), sample))]
        out.append(st)
    return Plan(today, out, len(holds))


def _scrub_sync_changes(session: Session, holder_ids: list[int]) -> None:
    """Drop the personal fields from the account-sync change lists of these account holders."""
    t = AccountSyncChange.__table__
    for n in range(0, len(holder_ids), 500):
        rows = session.execute(select(t.c.id, t.c.before, t.c.after).where(
            t.c.account_holder_id.in_(holder_ids[n:n + 500]))).all()
        for r in rows:
            values = {}
            for col in ("before", "after"):
                text = getattr(r, col)
                if not text:
                    continue
                try:
                    data = json.loads(text)
                except ValueError:
                    values[col] = None
                    continue
                if isinstance(data, dict) and any(k in data for k in SYNC_PERSONAL):
                    values[col] = json.dumps({k: v for k, v in data.items()
                                              if k not in SYNC_PERSONAL})
            if values:
                session.execute(update(t).where(t.c.id == r.id).values(**values))


def run(session: Session, *, actor: str, today: dt.date | None = None, dry_run: bool = False,
        batch: int = BATCH) -> Plan:
    """Anonymise what is due (at most ``batch`` records of each kind), skipping held records;
    one audit event with the counts. A dry run only says what would be done."""
    result = plan(session, today, sample=20 if dry_run else 0)
    if dry_run or not result.due:
        session.rollback()
        return result
    holds = active_holds(session)
    erased_values = 0
    for st in result.kinds:
        if not st.due:
            continue
        kind = KINDS[st.key]
        m = kind.model
        where = and_(_base(kind, st.cutoff), ~_held(kind, holds))
        ids = list(session.scalars(select(m.id).where(where).order_by(m.id).limit(batch)))
        for n in range(0, len(ids), 500):
            chunk = ids[n:n + 500]
            if kind.key == "transaction":  # the narrative's row goes; the income row stays
                nt = NARRATIVE.__table__
                st.anonymised += session.execute(delete(nt).where(
                    nt.c.transaction_id.in_(chunk))).rowcount or 0
                continue
            st.anonymised += session.execute(
                update(m.__table__).where(m.__table__.c.id.in_(chunk), kind.has_personal())
                .values(**kind.personal)).rowcount or 0
        if kind.audit_entity:
            erased_values += P.erase(session, kind.audit_entity, ids)
        if kind.key == "account_holder":
            _scrub_sync_changes(session, ids)
    counts = {st.key: st.anonymised for st in result.kinds if st.anonymised}
    audit.record(session, "retention.anonymise", "Retention", None, after={
        **counts, "audit_values_erased": erased_values, "held": result.held,
        "cutoffs": ", ".join(f"{st.key} {st.cutoff.isoformat()}" for st in result.kinds)},
        actor=actor, reason="Retention periods: " + ", ".join(
            f"{st.key} {st.years} years" for st in result.kinds))
    session.commit()
    return result


def tick_job() -> str | None:
    from app.extensions import db

    result = run(db.session, actor="worker")
    done = sum(k.anonymised for k in result.kinds)
    if not done:
        return None
    return f"{done} records anonymised ({result.held} held)"


def _register_job() -> None:
    from app.services.jobs import register_job

    register_job("retention", tick_job)


_register_job()


# --------------------------------------------------------------------------- subject access

LIMIT = 1000


@dataclass
class SubjectAccess:
    query: str
    sections: dict[str, list[dict]]

    @property
    def total(self) -> int:
        return sum(len(rows) for rows in self.sections.values())


SECTIONS = {
    "account_holders": N_("Account holders"),
    "transactions": N_("Payments"),
    "refunds": N_("Refunds"),
    "card_payments": N_("Card payments"),
    "payment_requests": N_("Payment requests"),
    "suspense_items": N_("Suspense items"),
    "audit": N_("Audit trail mentions"),
}


def _money(pence) -> str:
    from app.domain.money import Money

    return str(Money(pence)) if pence is not None else ""


def subject_access(session: Session, query: str) -> SubjectAccess:
    """What the IMS holds about a person (a name, any part of it, any case) or an account
    reference (exactly): account holders, payments, refunds, card payments, payment requests,
    suspense items and the audit events that mention them. At most LIMIT rows a section."""
    q = (query or "").strip() if isinstance(query, str) else ""
    if len(q) < 3 or len(q) > 200:
        raise ValidationError("Give a name or reference of 3 to 200 characters.",
                              {"q": ["Give a name or reference of 3 to 200 characters."]})
    ref = q.upper()
    s: dict[str, list[dict]] = {}

    holders = list(session.scalars(select(AccountHolder).where(or_(
        AccountHolder.account_reference == ref, _contains(AccountHolder.name, q),
        _contains(AccountHolder.address, q))).order_by(AccountHolder.id).limit(LIMIT)))
    s["account_holders"] = [{
        "id": h.id, "fund": h.fund_code, "reference": h.account_reference, "name": h.name,
        "address": h.address or "", "postcode": h.postcode or "",
        "closed": h.closed_at.date().isoformat() if h.closed_at else ""} for h in holders]
    refs = {h.account_reference for h in holders} | {ref}

    txns = list(session.scalars(select(Transaction).where(or_(
        Transaction.account_reference.in_(refs), Transaction.id.in_(
            select(NARRATIVE.transaction_id).where(_contains(NARRATIVE.narrative, q)))))
        .order_by(Transaction.id).limit(LIMIT)))
    s["transactions"] = [{
        "id": t.id, "receipt": t.receipt_number or "", "date": t.transaction_date.isoformat(),
        "fund": t.fund_code, "reference": t.account_reference or "", "amount": _money(t.amount),
        "method": t.payment_method_code, "narrative": t.narrative or ""} for t in txns]
    txn_ids = [t.id for t in txns]

    refunds = list(session.scalars(select(Refund).where(or_(
        Refund.transaction_id.in_(txn_ids) if txn_ids else false(),
        _contains(Refund.payer_name, q), _contains(Refund.payee_name, q)))
        .order_by(Refund.id).limit(LIMIT)))
    s["refunds"] = [{
        "id": r.id, "date": r.requested_at.date().isoformat(), "transaction": r.transaction_id,
        "amount": _money(r.amount), "status": r.status, "payer": r.payer_name or "",
        "payee": r.payee_name or "", "reason": r.reason or ""} for r in refunds]

    ref_items = or_(*[_items_mention(CardPayment.items_json, r) for r in refs])
    cards = list(session.scalars(select(CardPayment).where(or_(
        ref_items, _contains(CardPayment.payer_name, q), _contains(CardPayment.payer_email, q)))
        .order_by(CardPayment.id).limit(LIMIT)))
    s["card_payments"] = [{
        "id": c.id, "date": c.created_at.date().isoformat(), "amount": _money(c.amount),
        "status": c.status, "receipt": c.receipt_number or "", "name": c.payer_name or "",
        "email": c.payer_email or "", "address": c.payer_address or ""} for c in cards]

    req_items = or_(*[_items_mention(PaymentRequest.items_json, r) for r in refs])
    reqs = list(session.scalars(select(PaymentRequest).where(or_(
        req_items, _contains(PaymentRequest.name, q), _contains(PaymentRequest.email, q)))
        .order_by(PaymentRequest.id).limit(LIMIT)))
    s["payment_requests"] = [{
        "id": r.id, "date": r.created_at.date().isoformat(), "amount": _money(r.amount),
        "status": r.status, "name": r.name or "", "email": r.email or ""} for r in reqs]

    items = list(session.scalars(select(SuspenseItem).where(or_(
        func.upper(SuspenseItem.reference_text).in_(refs), _contains(SuspenseItem.narrative, q)))
        .order_by(SuspenseItem.id).limit(LIMIT)))
    s["suspense_items"] = [{
        "id": i.id, "date": i.transaction_date.isoformat(), "reference": i.reference_text or "",
        "amount": _money(i.amount), "status": i.status, "narrative": i.narrative or ""}
        for i in items]

    s["audit"] = _audit_mentions(session, q, holders, refunds, cards, reqs)
    return SubjectAccess(q, s)


def _audit_mentions(session: Session, q: str, holders, refunds, cards, reqs) -> list[dict]:
    from app.formatting import audit_changes

    records = [("AccountHolder", [h.id for h in holders]), ("Refund", [r.id for r in refunds]),
               ("CardPayment", [c.id for c in cards]), ("PaymentRequest", [r.id for r in reqs])]
    conds = [and_(AuditEvent.entity == entity, AuditEvent.entity_id.in_([str(i) for i in ids]))
             for entity, ids in records if ids]
    # personal values kept for the audit trail that match (their tokens are in the events)
    tokens = [f"pd:{r.id}:" for r in P.matching(session, q, limit=200)]
    for token in tokens:
        conds += [AuditEvent.after.contains(token, autoescape=True),
                  AuditEvent.before.contains(token, autoescape=True)]
    # events written with the value itself (the reason, or before personal_data existed)
    conds += [_contains(AuditEvent.reason, q), _contains(AuditEvent.after, q),
              _contains(AuditEvent.before, q)]
    events = list(session.scalars(select(AuditEvent).where(or_(*conds))
                                  .order_by(AuditEvent.id).limit(LIMIT)))
    out = []
    for e in events:
        changes = "; ".join(f"{c['field']}: {c['before']} → {c['after']}".strip()
                            for c in audit_changes(e))
        out.append({"id": e.id, "date": e.occurred_at.isoformat(timespec="seconds"),
                    "actor": e.actor, "action": e.action,
                    "record": f"{e.entity} {e.entity_id or ''}".strip(), "changes": changes})
    return out


def subject_access_csv(report: SubjectAccess) -> str:
    """The report as one CSV: section, record id, then each field as name=value."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "id", "details"])
    for section, rows in report.sections.items():
        for row in rows:
            w.writerow([section, row.get("id"),
                        "; ".join(f"{k}={_csv_safe(v)}" for k, v in row.items() if k != "id")])
    return buf.getvalue()


def _csv_safe(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
