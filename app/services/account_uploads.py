"""An account-holder file uploaded through a page or the API: received, then checked (and
applied) in a thread of this process or inline when configured — shared by both layers."""

from __future__ import annotations

from flask import current_app, request

from app.domain.errors import NotFound, ValidationError
from app.models.accounts import AccountSync


def _actor() -> str:
    from app.services.audit import current_actor

    return current_actor()


def _inline() -> bool:
    return bool(current_app.config.get("IMS_IMPORT_INLINE"))


def submit_account_file(file_storage, profile, *, apply: bool = False) -> AccountSync:
    """Receive an uploaded account-holder file and start checking it (a thread of this
    process, or inline when configured); with ``apply`` it is applied once checked."""
    from app.extensions import db
    from app.services import accounts as svc

    max_bytes = current_app.config["IMS_ACCOUNT_SYNC_MAX_BYTES"]
    if request.content_length and request.content_length > max_bytes + 65536:
        raise svc.FileRefused(f"The file is larger than the limit of {max_bytes // (1024 * 1024)}"
                              f" MB. Nothing was applied.")
    if file_storage is None or not getattr(file_storage, "filename", None):
        raise ValidationError("Choose a file to upload.", {"file": ["A file is required."]})
    if not profile:
        raise ValidationError("Choose the file's profile.", {"profile": ["Required."]})
    sync = svc.receive(db.session, profile=profile, stream=file_storage.stream,
                       filename=file_storage.filename, actor=_actor(),
                       instance_path=current_app.instance_path, max_bytes=max_bytes,
                       apply_after_check=apply)
    sync_id = sync.id
    if _inline():
        svc.check_sync(db.session, sync_id)
    else:
        svc.start_background(current_app._get_current_object(), sync_id)
    return db.session.get(AccountSync, sync_id)


def apply_account_sync(sync_id: int) -> AccountSync:
    from app.extensions import db
    from app.services import accounts as svc

    sync = db.session.get(AccountSync, sync_id)
    if sync is None:
        raise NotFound(f"No account-holder sync {sync_id}.")
    if sync.status != "checked":
        from app.domain.errors import Conflict

        raise Conflict(f"Account-holder sync {sync_id} is {sync.status}: only a checked file can "
                       f"be applied.")
    if _inline():
        return svc.apply_sync(db.session, sync_id, actor=_actor())
    from app.models.base import utcnow

    sync.status = "applying"
    sync.heartbeat_at = utcnow()
    db.session.commit()
    svc.start_background(current_app._get_current_object(), sync_id, apply=True, actor=_actor())
    return sync
