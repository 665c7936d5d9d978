"""Receiving an import file: stored as it arrives (size-limited, hashed: the same file twice is
refused), then checked whole — every line parsed, each bad line named — before anything posts.
A file with any bad line is kept as "failed" with its errors; nothing of it is posted."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, ValidationError
from app.domain.money import Money
from app.importers import FORMATS, FileRejected, LineError, Summary, parse_file
from app.models.base import utcnow
from app.models.imports import BankProfile, ImportBatch, ImportStatusEvent
from app.models.reference import PaymentMethod
from app.observability import current_request_id
from app.services import audit
from app.services.imports.batches import set_status
from app.services.imports.rows import allpay_methods
from app.services.reconciliation import STATEMENT_FORMATS, bank_account_for, create_statement
from app.services.validation import date_outside_window, transaction_date_window

#: line errors kept on a batch at most
MAX_ERRORS = 500


class ImportRejected(ValidationError):
    """The file is malformed: nothing was posted. ``lines`` lists {"line","message"}."""

    def __init__(self, message: str, lines: list[dict], import_id: int | None = None):
        super().__init__(message, {"file": [f"Line {e['line']}: {e['message']}" if e["line"]
                                            else e["message"] for e in lines[:50]]})
        self.lines = lines
        self.import_id = import_id

    def to_dict(self) -> dict:
        return {**super().to_dict(), "lines": self.lines, "id": self.import_id}


def storage_dir(instance_path: str) -> str:
    path = os.path.join(instance_path, "imports")
    os.makedirs(path, exist_ok=True)
    return path


def _errors(items: list[LineError]) -> list[dict]:
    return [{"line": e.line, "message": e.message} for e in items]


def validate_file(session: Session, fmt: str, path: str, profile: BankProfile | None
                  ) -> tuple[list[LineError], int, int, Summary]:
    """The whole-file pass: every line parsed (streaming), errors named by line, no posting.
    A date outside the accepted window (validation.transaction_date_window) is an error of its
    line. The summary gets the file's first and last transaction dates."""
    summary = Summary()
    errors: list[LineError] = []
    rows = total = 0
    first = last = None
    methods = set(session.scalars(select(PaymentMethod.code)))
    window = transaction_date_window()
    try:
        for item in parse_file(fmt, path, summary, profile, allpay_methods(session)):
            if isinstance(item, LineError):
                if len(errors) < MAX_ERRORS:
                    errors.append(item)
                continue
            if item.payment_method_code and item.payment_method_code not in methods:
                if len(errors) < MAX_ERRORS:
                    errors.append(LineError(item.line, f"Line {item.line}: unknown payment method "
                                                       f"{item.payment_method_code}."))
                continue
            if outside := date_outside_window(item.transaction_date, window):
                if len(errors) < MAX_ERRORS:
                    errors.append(LineError(item.line, f"Line {item.line}: {outside}"))
                continue
            rows += 1
            total += item.amount
            d = item.transaction_date
            if first is None or d < first:
                first = d
            if last is None or d > last:
                last = d
    except FileRejected as exc:
        errors.append(LineError(exc.line, exc.message))
    summary.first_date, summary.last_date = first, last
    return errors, rows, total, summary


def receive_import(session: Session, *, stream, filename: str, fmt: str, actor: str,
                   instance_path: str, max_bytes: int, profile: str | int | None = None,
                   office_code: str | None = "BANK", bank_account: str | int | None = None
                   ) -> ImportBatch:
    """Store and check an uploaded file. Returns the batch, status "received" (queued).

    ValidationError (422) for a bad format/profile or a file over the size limit; ImportRejected
    (422, naming lines) for malformed content — the batch is kept as "failed"; Conflict (409) for
    a file already imported.
    """
    if fmt not in FORMATS:
        raise ValidationError(f"Unknown format {fmt!r}.",
                              {"format": [f"Use one of {', '.join(FORMATS)}."]})
    prof = None
    if fmt == "bank_csv":
        if profile in (None, ""):
            raise ValidationError("A bank CSV needs the bank's column profile.",
                                  {"profile": ["Choose a bank profile."]})
        q = select(BankProfile)
        prof = session.scalar(q.where(BankProfile.id == int(profile)) if str(profile).isdigit()
                              else q.where(BankProfile.name == str(profile)))
        if prof is None:
            raise ValidationError("Unknown bank profile.", {"profile": ["Unknown bank profile."]})
    account = None
    if fmt in STATEMENT_FORMATS:  # a bank statement is tied to one bank account
        account = bank_account_for(session, bank_account)
    folder = storage_dir(instance_path)
    tmp = os.path.join(folder, f"upload-{uuid.uuid4().hex}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as out:
            while True:
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise ValidationError(
                        f"The file is larger than the limit of {max_bytes // (1024 * 1024)} MB "
                        f"({max_bytes} bytes).", {"file": ["The file is too large."]})
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    sha = digest.hexdigest()
    if size == 0:
        os.remove(tmp)
        raise ImportRejected("The file is empty.", [{"line": None, "message": "The file is empty."}])
    existing = session.scalar(select(ImportBatch).where(ImportBatch.active_sha256 == sha))
    if existing is not None:
        os.remove(tmp)
        raise Conflict(f"This file was already imported (import {existing.id}, "
                       f"{existing.filename}).", {"file": ["Duplicate file."]})
    errors, rows, total, summary = validate_file(session, fmt, tmp, prof)
    batch = ImportBatch(format=fmt, profile_id=prof.id if prof else None,
                        filename=(filename or "upload")[:255], sha256=sha,
                        active_sha256=None if errors else sha, size_bytes=size,
                        status="received", rows_total=rows, total_amount=total,
                        control_total=summary.control, created_by=actor, office_code=office_code,
                        first_date=summary.first_date, last_date=summary.last_date,
                        request_id=current_request_id(),
                        bank_account_id=account.id if account is not None else None,
                        errors_json=json.dumps(_errors(errors)))
    session.add(batch)
    session.flush()
    if account is not None and not errors:
        create_statement(session, batch, account, summary, actor)
    session.add(ImportStatusEvent(import_id=batch.id, status="received", actor=actor,
                                  message=f"{size} bytes, sha256 {sha[:12]}…"))
    audit.record(session, "receive", "ImportBatch", batch.id, after={
        "format": fmt, "filename": batch.filename, "sha256": sha, "rows": rows,
        "total": str(Money(total))}, actor=actor)
    if errors:
        os.remove(tmp)
        set_status(session, batch, "failed", actor, f"{len(errors)} error(s); nothing posted")
        batch.finished_at = utcnow()
        session.commit()
        raise ImportRejected(f"The file has {len(errors)} error(s); nothing was posted.",
                             _errors(errors), batch.id)
    final = os.path.join(folder, f"{batch.id}-{sha[:16]}.dat")
    os.replace(tmp, final)
    batch.stored_path = final
    try:
        session.commit()
    except Exception:
        session.rollback()
        if os.path.exists(final):
            os.remove(final)
        if session.scalar(select(ImportBatch.id).where(ImportBatch.active_sha256 == sha)):
            raise Conflict("This file was already imported.", {"file": ["Duplicate file."]}) from None
        raise
    return batch
