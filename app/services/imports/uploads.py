"""Receive a file uploaded through a page or the API and start posting it: in a thread of the
web process, or inline when IMS_IMPORT_INLINE is set (tests, small sites)."""

from __future__ import annotations

from flask import current_app

from app.domain.errors import ValidationError
from app.models.imports import ImportBatch


def submit_upload(file_storage, fmt: str, profile, *, background: bool = True,
                  bank_account=None) -> ImportBatch:
    """Store and check ``file_storage`` (a werkzeug FileStorage) as an import of format ``fmt``
    with bank profile ``profile``, then start processing it; returns the batch."""
    from app.extensions import db
    from app.services import imports as svc  # the package's names, as callers (and tests) see them
    from app.services.audit import current_actor

    if file_storage is None or not getattr(file_storage, "filename", None) and \
            not getattr(file_storage, "stream", None):
        raise ValidationError("Choose a file to upload.", {"file": ["A file is required."]})
    batch = svc.receive_import(
        db.session, stream=file_storage.stream, filename=file_storage.filename or "upload",
        fmt=(fmt or "").strip(), profile=profile or None, actor=current_actor(),
        bank_account=bank_account or None,
        instance_path=current_app.instance_path,
        max_bytes=current_app.config.get("IMS_IMPORT_MAX_BYTES", 50 * 1024 * 1024))
    batch_id = batch.id
    if current_app.config.get("IMS_IMPORT_INLINE"):
        svc.process_import(db.session, batch_id, actor=current_actor())
    elif background:
        svc.start_background(current_app._get_current_object(), batch_id)
    return db.session.get(ImportBatch, batch_id)
