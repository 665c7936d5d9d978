"""General-ledger export batches (issue 18).

A batch takes every ledger line not yet exported whose accounting date is on or before the
cut-off, records its membership in gl_export_line (one INSERT ... SELECT; ledger rows stay
append-only), and writes a file in a layout (app/services/gl_layouts.py), summarised by
accounting date, GL code, cost centre, VAT code and direction (debits and credits summed apart,
so the file's debits add up to the control total) or itemised, one row per line.

GL coding: a FUND line's net goes to the fund's GL code and cost centre; when the line is a
whole income line with VAT (|amount| = the transaction's amount), its VAT goes to the VAT
code's GL code (vat_code.gl_code, else the setting gl.vat_gl_code, else "VAT"). Other accounts
(BANK, SUSPENSE, REFUNDS_PAYABLE, WRITE_OFFS, the clearing accounts, MIGRATION) go to the
setting gl.account.<ACCOUNT> (else the account's name); their cost centre is the fund's when the line names one, else
gl.default_cost_centre. A fund without a GL code stops the batch (nothing is exported).

Two batches never export a line twice: batch creation is serialised (PostgreSQL: an advisory
transaction lock; SQLite: the write lock), and the partial unique index uq_gl_export_line_live
refuses a second live membership of a line whatever happens. Everything is one transaction: a
batch that fails leaves nothing marked exported. The file is stored with the batch, so a
download gives the same bytes every time.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
from dataclasses import dataclass

from sqlalchemy import Date, and_, case, cast, exists, false, func, literal, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.ids import parse_id
from app.domain.money import Money
from app.models.base import utcnow
from app.models.gl import GlExportBatch, GlExportLine, GlLayout
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.reconciliation import BankAccount
from app.models.reference import Fund, Setting, VatCode
from app.services import audit
from app.services import gl_layouts as LAY
from app.services.locking import for_update, write_lock
from app.services.periods import today

GL_LOCK = 720_319  # advisory lock: one batch at a time (PostgreSQL)
PREFIX = "GL"


# --------------------------------------------------------------------------- SQL pieces
def accounting_date_expr(dialect: str):
    """A group's accounting date; groups posted before periods existed have none: their date
    of posting (London) counts."""
    if dialect == "postgresql":
        posted = cast(func.timezone("Europe/London", PostingGroup.created_at), Date)
    else:
        posted = func.date(PostingGroup.created_at)
    return func.coalesce(PostingGroup.accounting_date, posted)


def _vat_applies():
    return and_(LedgerLine.account == "FUND", Transaction.id.is_not(None),
                Transaction.vat_amount != 0, func.abs(LedgerLine.amount) == Transaction.amount)


def _vat_part():
    return case((_vat_applies(), case((LedgerLine.amount < 0, -Transaction.vat_amount),
                                      else_=Transaction.vat_amount)), else_=0)


def _not_exported():
    return ~exists(select(GlExportLine.ledger_line_id).where(
        GlExportLine.ledger_line_id == LedgerLine.id, GlExportLine.voided == false()))


def unexported_summary(session: Session, up_to: dt.date) -> tuple[int, int]:
    """(lines, debit total) not yet in a live batch with an accounting date on or before up_to."""
    adate = accounting_date_expr(session.get_bind().dialect.name)
    count, total = session.execute(
        select(func.count(), func.coalesce(func.sum(case((LedgerLine.amount > 0, LedgerLine.amount),
                                                         else_=0)), 0))
        .select_from(LedgerLine).join(PostingGroup, PostingGroup.id == LedgerLine.group_id)
        .where(adate <= up_to, _not_exported())).one()
    return int(count), int(total)


# --------------------------------------------------------------------------- GL coding
@dataclass
class Coding:
    funds: dict[str, tuple[str | None, str | None]]
    vat: dict[str, str | None]
    settings: dict[str, str]
    #: a bank account's BANK lines carry its ledger reference: that reference -> its GL code
    banks: dict[str, str] | None = None

    def default_cc(self) -> str:
        return self.settings.get("gl.default_cost_centre", "")

    def vat_gl(self, code: str | None) -> str:
        return self.vat.get(code or "") or self.settings.get("gl.vat_gl_code") or "VAT"

    def account_gl(self, account: str, reference: str | None = None) -> str:
        """The GL code of a control or clearing account; a Bank line of a bank account other
        than the default (its reference names the account) goes to that account's own code."""
        if account == "BANK" and reference and reference in (self.banks or {}):
            return self.banks[reference]
        return self.settings.get(f"gl.account.{account}") or account

    def fund_gl(self, fund: str | None) -> str | None:
        return self.funds.get(fund or "", (None, None))[0]

    def cost_centre(self, fund: str | None) -> str:
        return self.funds.get(fund or "", (None, None))[1] or self.default_cc()


def coding(session: Session) -> Coding:
    return Coding(
        funds={c: (g, cc) for c, g, cc in session.execute(
            select(Fund.code, Fund.gl_code, Fund.cost_centre))},
        vat=dict(session.execute(select(VatCode.code, VatCode.gl_code)).all()),
        settings=dict(session.execute(select(Setting.key, Setting.value).where(
            Setting.key.like("gl.%"))).all()),
        banks=dict(session.execute(select(BankAccount.ledger_reference,
                                          BankAccount.ledger_account_code)
                                   .where(BankAccount.ledger_reference.is_not(None))).all()))


# --------------------------------------------------------------------------- rows
def _summary_rows(session: Session, batch_id: int, code: Coding) -> list[dict]:
    """The batch's lines summed by date, account, fund, VAT code and direction in SQL, then
    mapped to GL codes and merged (a handful of rows per day)."""
    dialect = session.get_bind().dialect.name
    adate = accounting_date_expr(dialect).label("d")
    vat_part = _vat_part()
    debit = (LedgerLine.amount > 0).label("is_debit")
    vat_code = case((and_(LedgerLine.account == "FUND", Transaction.id.is_not(None)),
                     Transaction.vat_code), else_=None).label("vat_code")
    bank_ref = case((LedgerLine.account == "BANK", LedgerLine.account_reference),
                    else_=None).label("bank_ref")
    q = (select(adate, LedgerLine.account, LedgerLine.fund_code, vat_code, debit,
                func.sum(LedgerLine.amount - vat_part), func.sum(vat_part), func.count(),
                bank_ref)
         .select_from(GlExportLine)
         .join(LedgerLine, LedgerLine.id == GlExportLine.ledger_line_id)
         .join(PostingGroup, PostingGroup.id == LedgerLine.group_id)
         .outerjoin(Transaction, Transaction.id == LedgerLine.transaction_id)
         .where(GlExportLine.batch_id == batch_id)
         .group_by(adate, LedgerLine.account, LedgerLine.fund_code, vat_code, debit, bank_ref))
    merged: dict[tuple, dict] = {}
    missing: set[str] = set()

    def add(d, gl, cc, vcode, fund, amount, n):
        if amount == 0 and n == 0:
            return
        key = (d, gl, cc, vcode or "", amount > 0 if amount else None)
        row = merged.setdefault(key, {"accounting_date": d, "gl_code": gl, "cost_centre": cc,
                                      "vat_code": vcode or "", "fund_code": fund or "",
                                      "amount": 0, "line_count": 0})
        if row["fund_code"] != (fund or ""):
            row["fund_code"] = ""
        row["amount"] += amount
        row["line_count"] += n

    for d, account, fund, vcode, _debit, net, vat, n, ref in session.execute(q):
        if isinstance(d, str):
            d = dt.date.fromisoformat(d[:10])
        net, vat, n = int(net or 0), int(vat or 0), int(n)
        if account == "FUND":
            gl = code.fund_gl(fund)
            if not gl:
                missing.add(fund or "?")
                continue
            add(d, gl, code.cost_centre(fund), vcode, fund, net, n)
            if vat:
                add(d, code.vat_gl(vcode), code.cost_centre(fund), vcode, fund, vat, 0)
        else:
            cc = code.cost_centre(fund) if fund else code.default_cc()
            add(d, code.account_gl(account, ref), cc, None, fund, net, n)
    if missing:
        raise ValidationError(
            f"Fund(s) {', '.join(sorted(missing))} have no GL code: set one on the fund; "
            f"nothing was exported.", {"fund": [f"No GL code: {', '.join(sorted(missing))}."]})
    return [merged[k] for k in sorted(merged, key=lambda k: (k[0], k[1], k[2], k[3],
                                                             not k[4]))]


def _item_rows(session: Session, batch_id: int, code: Coding):
    dialect = session.get_bind().dialect.name
    adate = accounting_date_expr(dialect).label("d")
    q = (select(adate, LedgerLine.id, LedgerLine.account, LedgerLine.fund_code,
                LedgerLine.account_reference, LedgerLine.amount, _vat_part().label("vat"),
                Transaction.vat_code, PostingGroup.number, PostingGroup.kind,
                PostingGroup.created_by, PostingGroup.office_code)
         .select_from(GlExportLine)
         .join(LedgerLine, LedgerLine.id == GlExportLine.ledger_line_id)
         .join(PostingGroup, PostingGroup.id == LedgerLine.group_id)
         .outerjoin(Transaction, Transaction.id == LedgerLine.transaction_id)
         .where(GlExportLine.batch_id == batch_id)
         .order_by(LedgerLine.id).execution_options(yield_per=5000))
    for r in session.execute(q):
        d = dt.date.fromisoformat(r.d[:10]) if isinstance(r.d, str) else r.d
        base = {"accounting_date": d, "posting_number": r.number, "posting_kind": r.kind,
                "ledger_line_id": r.id, "ledger_account": r.account,
                "account_reference": r.account_reference or "", "posted_by": r.created_by,
                "office_code": r.office_code or "", "fund_code": r.fund_code or "",
                "line_count": 1}
        vat = int(r.vat or 0)
        if r.account == "FUND":
            gl = code.fund_gl(r.fund_code)
            if not gl:
                raise ValidationError(
                    f"Fund {r.fund_code} has no GL code: set one on the fund; nothing was "
                    f"exported.", {"fund": [f"No GL code: {r.fund_code}."]})
            vcode = r.vat_code or ""
            yield {**base, "gl_code": gl, "cost_centre": code.cost_centre(r.fund_code),
                   "vat_code": vcode, "amount": r.amount - vat}
            if vat:
                yield {**base, "gl_code": code.vat_gl(vcode), "line_count": 0,
                       "cost_centre": code.cost_centre(r.fund_code), "vat_code": vcode,
                       "amount": vat}
        else:
            cc = code.cost_centre(r.fund_code) if r.fund_code else code.default_cc()
            yield {**base, "gl_code": code.account_gl(r.account, r.account_reference),
                   "cost_centre": cc,
                   "vat_code": "", "amount": r.amount}


def _money(pence: int) -> str:
    return str(Money(pence))


def render(layout: dict, rows, batch_number: str, cut_off: dt.date) -> tuple[bytes, int, int, int]:
    """The file: (bytes, rows written, debit total, credit total) in pence."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=layout["delimiter"], lineterminator=layout["line_ending"])
    cols = layout["columns"]
    if layout["header"]:
        writer.writerow([c["header"] for c in cols])
    fmt = layout["date_format"]
    credit_positive = layout["sign"] == "credit_positive"
    n = debits = credits = 0
    for row in rows:
        amount = row["amount"]
        if amount == 0:
            continue
        n += 1
        if amount > 0:
            debits += amount
        else:
            credits -= amount
        d = row["accounting_date"]
        values = {
            "batch_number": batch_number, "cut_off": cut_off.strftime(fmt),
            "accounting_date": d.strftime(fmt), "period": f"{d:%Y-%m}",
            "amount": _money(-amount if credit_positive else amount),
            "debit": _money(amount) if amount > 0 else "",
            "credit": _money(-amount) if amount < 0 else "",
            "dc_flag": "D" if amount > 0 else "C", "dc_sign": "1" if amount > 0 else "-1",
            "description": f"IMS {batch_number} {d.isoformat()} {row['gl_code']}",
            "row_number": str(n), "currency": "GBP",
        }
        writer.writerow([c["text"] if "text" in c else
                         values.get(c["field"], row.get(c["field"], "")) for c in cols])
    return out.getvalue().encode("utf-8"), n, debits, credits


# --------------------------------------------------------------------------- use cases
def parse_cut_off(value) -> dt.date:
    from app.services.receipts import parse_date

    d = parse_date(value, field="cut_off")
    if d is None:
        raise ValidationError("cut_off: give a date.", {"cut_off": ["Give a date as YYYY-MM-DD."]})
    if d > today():
        raise ValidationError(f"cut_off: {d.isoformat()} is in the future; a batch takes lines up "
                              f"to today at the latest.", {"cut_off": ["In the future."]})
    return d


def _serialise(session: Session) -> None:
    """One batch at a time (held until the caller's transaction ends)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k, 0)"), {"k": GL_LOCK})
    else:
        write_lock(session)


def create_batch(session: Session, *, cut_off, layout, actor: str, summarised: bool = True,
                 trigger: str = "ui", allow_empty: bool = False) -> GlExportBatch | None:
    """Export every line not yet exported up to ``cut_off``. Commits once; on any error
    rolls back (nothing marked exported) and raises. ValidationError: future cut-off, unknown
    layout, a layout unfit for the export, a fund without a GL code, nothing to export
    (unless allow_empty, which returns None)."""
    try:
        cut = parse_cut_off(cut_off)
        if not isinstance(summarised, bool):
            raise ValidationError("summarised: true or false.", {"summarised": ["true or false."]})
        _serialise(session)
        layout_row = LAY.get(session, layout)
        definition = LAY.validate(layout_row.definition, summarised=summarised)
        from app.services.ledger import next_number

        number = next_number(session, PREFIX)
        batch = GlExportBatch(number=number, cut_off=cut, layout_id=layout_row.id,
                              summarised=summarised, status="complete", created_by=actor,
                              created_at=utcnow(), trigger=trigger, filename="", content=b"",
                              sha256="")
        session.add(batch)
        session.flush()
        adate = accounting_date_expr(session.get_bind().dialect.name)
        members = (select(literal(batch.id), LedgerLine.id, false())
                   .select_from(LedgerLine)
                   .join(PostingGroup, PostingGroup.id == LedgerLine.group_id)
                   .where(adate <= cut, _not_exported()))
        session.execute(GlExportLine.__table__.insert().from_select(
            ["batch_id", "ledger_line_id", "voided"], members))
        line_count, total, net = session.execute(
            select(func.count(),
                   func.coalesce(func.sum(case((LedgerLine.amount > 0, LedgerLine.amount),
                                               else_=0)), 0),
                   func.coalesce(func.sum(LedgerLine.amount), 0))
            .select_from(GlExportLine).join(LedgerLine, LedgerLine.id == GlExportLine.ledger_line_id)
            .where(GlExportLine.batch_id == batch.id)).one()
        line_count = int(line_count)
        if not line_count:
            if allow_empty:
                session.rollback()
                return None
            raise ValidationError(f"Nothing to export: every line up to {cut.isoformat()} is "
                                  f"already in a batch.", {"cut_off": ["Nothing to export."]})
        if int(net) != 0:
            raise ValidationError("The batch's lines do not balance; nothing was exported.")
        code = coding(session)
        rows = (_summary_rows(session, batch.id, code) if summarised
                else _item_rows(session, batch.id, code))
        content, n_rows, debits, credits = render(definition, rows, number, cut)
        if debits != int(total) or credits != int(total):
            raise ValidationError(f"The file's debits {Money(debits)} and credits "
                                  f"{Money(credits)} do not equal the control total "
                                  f"{Money(int(total))}; nothing was exported.")
        batch.line_count, batch.row_count, batch.control_total = line_count, n_rows, int(total)
        batch.content = content
        batch.sha256 = hashlib.sha256(content).hexdigest()
        batch.filename = f"{number}_{layout_row.name}_{cut.isoformat()}.csv"
        session.flush()
        audit.record(session, "gl_export.run", "GlExportBatch", batch.id, after={
            "number": number, "cut_off": cut.isoformat(), "layout": layout_row.name,
            "layout_version": layout_row.version, "summarised": summarised, "lines": line_count,
            "rows": n_rows, "control_total": str(Money(int(total))), "sha256": batch.sha256,
            "trigger": trigger}, actor=actor)
        session.commit()
        return batch
    except IntegrityError:
        session.rollback()
        raise Conflict("Another batch exported some of these lines at the same moment; "
                       "nothing was exported. Run it again.") from None
    except Exception:
        session.rollback()
        raise


def get_batch(session: Session, batch_id) -> GlExportBatch:
    bid = parse_id(batch_id)
    batch = session.get(GlExportBatch, bid) if bid is not None else None
    if batch is None:
        raise NotFound(f"GL export batch {str(batch_id)[:40]} does not exist.")
    return batch


def download(session: Session, batch_id, *, actor: str) -> GlExportBatch:
    """The batch (its stored file), the download audited. Commits."""
    try:
        batch = get_batch(session, batch_id)
        audit.record(session, "gl_export.download", "GlExportBatch", batch.id,
                     after={"number": batch.number, "sha256": batch.sha256}, actor=actor)
        session.commit()
        return batch
    except Exception:
        session.rollback()
        raise


def void_batch(session: Session, batch_id, *, reason, actor: str) -> GlExportBatch:
    """Void a batch (Finance Manager, with a reason): its lines go into the next batch."""
    try:
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError("Give a reason for voiding the batch.",
                                  {"reason": ["A reason is required."]})
        if len(reason) > 1000:
            raise ValidationError("The reason is too long.", {"reason": ["At most 1000 characters."]})
        bid = parse_id(batch_id)
        batch = session.scalar(for_update(session, select(GlExportBatch).where(
            GlExportBatch.id == bid)).execution_options(populate_existing=True)) if bid else None
        if batch is None:
            raise NotFound(f"GL export batch {str(batch_id)[:40]} does not exist.")
        if batch.status == "void":
            raise Conflict(f"{batch.number} is already void.", {"status": ["Already void."]})
        batch.status, batch.voided_at, batch.voided_by = "void", utcnow(), actor
        batch.void_reason = reason.strip()
        session.execute(update(GlExportLine).where(GlExportLine.batch_id == batch.id)
                        .values(voided=True))
        audit.record(session, "gl_export.void", "GlExportBatch", batch.id,
                     before={"status": "complete"}, after={"status": "void",
                                                           "number": batch.number},
                     reason=batch.void_reason, actor=actor)
        session.commit()
        return batch
    except Exception:
        session.rollback()
        raise


def batches(session: Session, limit: int = 200, offset: int = 0) -> list[GlExportBatch]:
    return list(session.scalars(select(GlExportBatch).order_by(GlExportBatch.id.desc())
                                .limit(limit).offset(offset)))


def to_dict(batch: GlExportBatch, layout: GlLayout | None = None) -> dict:
    return {"id": batch.id, "number": batch.number, "cut_off": batch.cut_off.isoformat(),
            "layout": layout.name if layout else None,
            "layout_version": layout.version if layout else None,
            "summarised": batch.summarised, "status": batch.status,
            "line_count": batch.line_count, "row_count": batch.row_count,
            "control_total": str(Money(batch.control_total)), "filename": batch.filename,
            "sha256": batch.sha256, "created_at": batch.created_at.isoformat(),
            "created_by": batch.created_by, "trigger": batch.trigger,
            "voided_at": batch.voided_at.isoformat() if batch.voided_at else None,
            "voided_by": batch.voided_by, "void_reason": batch.void_reason}


# --------------------------------------------------------------------------- schedule
def _schedule() -> str:
    try:
        from flask import current_app

        value = current_app.config.get("GL_EXPORT_SCHEDULE")
    except RuntimeError:
        value = None
    return (value or os.environ.get("GL_EXPORT_SCHEDULE") or "daily").strip().lower()


def scheduled_run(session: Session, now: dt.date | None = None) -> str | None:
    """The `ims tick` job: GL_EXPORT_SCHEDULE "daily" (default) exports up to yesterday once a
    day, "monthly" up to the end of last month once a month, "off" never. Layout:
    GL_EXPORT_LAYOUT (default generic_journal_csv)."""
    schedule = _schedule()
    if schedule in ("off", "never", "none", ""):
        return None
    now = now or today()
    if schedule == "monthly":
        cut = now.replace(day=1) - dt.timedelta(days=1)
    else:
        cut = now - dt.timedelta(days=1)
    done = session.scalar(select(GlExportBatch.id).where(
        GlExportBatch.trigger == "schedule", GlExportBatch.cut_off == cut).limit(1))
    session.rollback()
    if done:
        return None
    try:
        from flask import current_app

        layout = current_app.config.get("GL_EXPORT_LAYOUT") or "generic_journal_csv"
    except RuntimeError:
        layout = "generic_journal_csv"
    batch = create_batch(session, cut_off=cut, layout=layout, actor="worker",
                         trigger="schedule", allow_empty=True)
    if batch is None:
        return f"nothing to export up to {cut.isoformat()}"
    return f"{batch.number}: {batch.line_count} lines, control total {Money(batch.control_total)}"


def _job() -> str | None:
    """A batch that cannot run (a fund without a GL code...) is reported, not raised: the other
    jobs of the tick still run, and the next tick tries again."""
    from app.extensions import db

    return run_job(db.session)


def run_job(session: Session, now: dt.date | None = None) -> str | None:
    try:
        return scheduled_run(session, now)
    except (ValidationError, Conflict) as exc:
        session.rollback()
        return f"failed: {exc.message}"


def _register_job() -> None:
    from app.services.jobs import register_job

    register_job("gl-export", _job)


_register_job()


def file_response(batch: GlExportBatch):
    """The batch's stored file as a download (the same bytes every time), with its control
    total and digest in headers."""
    from flask import Response

    resp = Response(batch.content, mimetype=batch.content_type)
    resp.headers["Content-Disposition"] = f'attachment; filename="{batch.filename}"'
    resp.headers["X-Control-Total"] = str(Money(batch.control_total))
    resp.headers["X-Content-SHA256"] = batch.sha256
    return resp
