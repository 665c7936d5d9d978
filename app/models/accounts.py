"""Account-holder sync from the revenues systems: saved file profiles (reference data), sync
runs with their staged lines and their stored change list."""

from __future__ import annotations

import json
from datetime import date, datetime

from flask_appbuilder import Model
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UTCDateTime, utcnow

FILE_FORMATS = ("csv", "fixed")
#: what a profile may map a file column to
PROFILE_FIELDS = ("reference", "name", "title", "forename", "surname", "address", "address1",
                  "address2", "address3", "address4", "postcode", "balance", "balance_date",
                  "stop", "stop_message")
SYNC_STATUSES = ("checking", "checked", "refused", "applying", "applied", "failed")


class AccountHolderProfile(Model):
    """How to read one revenues system's account-holder file for one fund."""

    __tablename__ = "account_holder_profile"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    fund_code: Mapped[str] = mapped_column(ForeignKey("fund.code"), nullable=False)
    file_format: Mapped[str] = mapped_column(String(10), nullable=False, default="csv")
    encoding: Mapped[str] = mapped_column(String(20), nullable=False, default="utf-8")
    delimiter: Mapped[str] = mapped_column(String(5), nullable=False, default=",")
    has_header: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    date_format: Mapped[str] = mapped_column(String(30), nullable=False, default="%d/%m/%Y")
    #: JSON object: field -> CSV column name (with a header) or 1-based number; fixed width:
    #: "start-end" (1-based, inclusive)
    columns: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    #: file columns the profile knows of and ignores (comma list); any other is refused
    ignored_columns: Mapped[str | None] = mapped_column(Text)
    #: the file lists every account of the fund: accounts not in it are closed
    complete: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    #: skip bad lines (and list them) instead of refusing the file
    skip_bad_lines: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    @property
    def mapping(self) -> dict:
        try:
            value = json.loads(self.columns or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def __repr__(self) -> str:
        return self.name


class AccountSync(Model):
    """One file of account holders: checked (dry run), then applied as one audited change."""

    __tablename__ = "account_sync"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("account_holder_profile.id"), nullable=False)
    fund_code: Mapped[str] = mapped_column(String(10), nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    stored_path: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(20), nullable=False, default="upload")
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="checking")
    bytes_done: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    lines_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    new_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    changed_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    unchanged_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    missing_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    bad_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: JSON list of {"line": n, "message": ...}
    bad_lines: Mapped[str | None] = mapped_column(Text)
    #: JSON list of a sample of changed accounts, field by field
    sample: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    apply_after_check: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    applied_by: Mapped[str | None] = mapped_column(String(100))

    @property
    def bad_line_list(self) -> list[dict]:
        return json.loads(self.bad_lines) if self.bad_lines else []

    @property
    def sample_list(self) -> list[dict]:
        return json.loads(self.sample) if self.sample else []

    @property
    def percent(self) -> int:
        if self.status in ("checked", "refused", "applied", "failed"):
            return 100
        if not self.size_bytes:
            return 0
        return min(99, int(100 * self.bytes_done / self.size_bytes))


class AccountSyncRow(Model):
    """A line of a sync's file, parsed (kept until the sync is applied or dropped).

    Transient, and written a million at a time: no foreign key to account_sync (a check per
    staged line; the sync drops its own lines) and one index, on the sync (its lines are only
    ever read all together, joined by hash)."""

    __tablename__ = "account_sync_row"
    # (sync_id, account_reference): SQLite finds the accounts missing from a file through it
    __table_args__ = (Index("ix_account_sync_row_sync_ref", "sync_id", "account_reference"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sync_id: Mapped[int] = mapped_column(Integer, nullable=False)
    line_no: Mapped[int] = mapped_column(Integer, nullable=False)
    account_reference: Mapped[str] = mapped_column(String(30), nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(Text)
    postcode: Mapped[str | None] = mapped_column(String(10))
    balance: Mapped[int | None] = mapped_column(BigInteger)
    balance_date: Mapped[date | None] = mapped_column(Date)
    stop_message: Mapped[str | None] = mapped_column(String(200))
    phonetic_key: Mapped[str | None] = mapped_column(String(4))


class AccountSyncChange(Model):
    """The stored change list of an applied sync: one row per account it created, changed,
    closed or reopened (the audit trail has one event for the sync, pointing here).

    Written only by the apply, a million rows for a first load, with the id of the sync it
    holds locked; syncs are never deleted. So there is no foreign key to account_sync: its
    check for each row cost as much as writing the row (migration 0022)."""

    __tablename__ = "account_sync_change"
    __table_args__ = (Index("ix_account_sync_change_sync", "sync_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sync_id: Mapped[int] = mapped_column(Integer, nullable=False)
    account_holder_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    account_reference: Mapped[str] = mapped_column(String(30), nullable=False)
    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    #: JSON of the file-held fields before (changed, closed, reopened)
    before: Mapped[str | None] = mapped_column(Text)
    #: JSON of the same fields after (changed, reopened)
    after: Mapped[str | None] = mapped_column(Text)


class MigrationRecord(Model):
    """What a migration from another system (LocalGov IMS) loaded, by its key there: running it
    again finds the record and adds nothing twice."""

    __tablename__ = "migration_record"
    __table_args__ = (UniqueConstraint("source", "kind", "source_key",
                                       name="uq_migration_record_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    source_key: Mapped[str] = mapped_column(String(100), nullable=False)
    target_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
