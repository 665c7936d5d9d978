"""Double-entry ledger: posting groups, ledger lines, income transactions, numbers, idempotency keys.

Ledger rows are append-only (database triggers in ``install_ledger_triggers`` refuse UPDATE and
DELETE); on PostgreSQL a statement-level trigger checks that every posting group a statement
writes lines to sums to zero once the statement has run (a posting writes all its legs in one
statement).

Columns that are NULL on most rows (a reversal's target, a ledger line's transaction, a
transaction's source) have partial indexes, WHERE the column IS NOT NULL: look-ups by value use them
and the rows without a value cost no index entry.
"""

from __future__ import annotations

from datetime import date, datetime

from flask_appbuilder import Model
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from app.models.base import UTCDateTime, partial_index, utcnow
from app.models.ddl import database_object


def _where_not_null(column: str) -> dict:
    """Index keyword arguments: a partial index of the rows where column has a value."""
    return partial_index(f"{column} IS NOT NULL")


#: References into the append-only ledger that PostgreSQL checks once per statement (see
#: install_ledger_triggers) rather than with a foreign key: (table, column, referenced table).
#: The models still declare them (SQLite keeps them as written; relationships use them).
STATEMENT_CHECKED_REFERENCES = (("income_transaction", "posting_group_id", "posting_group"),
                                ("ledger_line", "group_id", "posting_group"),
                                ("ledger_line", "transaction_id", "income_transaction"),
                                ("transaction_narrative", "transaction_id",
                                 "income_transaction"))

#: The partial index ix_ledger_line_account_fund's condition, as a query must state it (SQLite
#: uses a partial index only for a query that has its condition as written).
NOT_BANK = "ledger_line.account <> 'BANK'"

GROUP_KINDS = ("receipt", "journal", "transfer", "import", "suspense", "allocation", "refund",
               "refund_payment", "write_off", "reversal", "cash_up", "migration", "reconciliation")
ACCOUNTS = ("BANK", "SUSPENSE", "REFUNDS_PAYABLE", "WRITE_OFFS", "FUND",
            # clearing accounts (app/services/clearing.py): money receipted but not yet banked
            "CASH_IN_HAND", "CASH_IN_TRANSIT", "CARD_CLEARING", "AGENT_CLEARING", "CASH_VARIANCE",
            # the control account history migrated from another system is posted against
            "MIGRATION",
            # card providers' fees kept from settlements, and bank charges (bank reconciliation)
            "CARD_FEES", "BANK_CHARGES")
#: ledger_line's CHECK on account (migrations 0013_cashup and 0014_accounts widened it)
ACCOUNT_CHECK = "account IN (" + ",".join(f"'{a}'" for a in ACCOUNTS) + ")"


class PostingGroup(Model):
    """One balanced set of ledger lines posted together (a receipt, a journal, a reversal...)."""

    __tablename__ = "posting_group"
    __table_args__ = (
        # a group is reversed at most once
        Index("uq_posting_group_reverses_id", "reverses_id", unique=True,
              **_where_not_null("reverses_id")),
        # the corrections (reversals, refunds, journals...) posted in a period, for the reports:
        # one range of the index per kind instead of every group posted in the period
        Index("ix_posting_group_kind_created_at", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    number: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow,
                                                 index=True)
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)
    office_code: Mapped[str | None] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text)
    import_id: Mapped[int | None] = mapped_column(Integer, index=True)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("posting_group.id"))
    #: the date that decides the accounting period (app/services/periods.py): the transaction
    #: date for receipts, imports and card payments, the posting date for corrections; moved to
    #: the first day of the first open period when it fell in a closed one. NULL on groups posted
    #: before periods existed (their London date of posting counts).
    accounting_date: Mapped[date | None] = mapped_column(Date)
    #: not stored: the accounting date the posting asked for (set by ledger.post_group)
    requested_accounting_date = None

    lines: Mapped[list["LedgerLine"]] = relationship(back_populates="group",
                                                      order_by="LedgerLine.id")
    reverses: Mapped["PostingGroup | None"] = relationship(remote_side=[id],
                                                           foreign_keys=[reverses_id])

    def __repr__(self) -> str:
        return f"{self.number} ({self.kind})"


#: The columns the income dashboard reads from a transaction (app/services/search.dashboard).
DASHBOARD_COLUMNS = ("fund_code", "payment_method_code", "amount", "posting_group_id",
                     "source_transaction_id", "receipt_number")


class TransactionNarrative(Model):
    """A transaction's narrative, kept out of the append-only income row: a narrative is free
    text that may name a person, so retention erases it (deletes this row) while the income row,
    the ledger and the audit chain stay as they are. A transaction without a narrative has no
    row. Never changed once written (a trigger refuses UPDATE): kept as recorded, or erased.

    ``fund_code`` repeats the transaction's fund (not personal data), so that a search of one
    fund group's narratives filters by fund and pattern in one index (PostgreSQL: the GIN index
    ix_transaction_narrative_fund_trgm on (fund_code, narrative), btree_gin). The transaction's
    fund is the fund: every writer (ledger.record_income, the import writers, migration 0025)
    writes it with the narrative, from the same value, in the same statement or transaction,
    and neither row is ever changed (income_transaction is append-only, this table refuses
    UPDATE), so the two cannot diverge.

    ``transaction_date`` repeats the transaction's date the same way (written with it, never
    changed), so that a search by narrative finds its page of newest matches from this table
    alone (search._narrative_page): sorting thousands of matches by a date read from each
    one's income row cost a look-up of that row per match."""

    __tablename__ = "transaction_narrative"

    transaction_id: Mapped[int] = mapped_column(ForeignKey("income_transaction.id"),
                                                primary_key=True, autoincrement=False)
    narrative: Mapped[str] = mapped_column(String(500), nullable=False)
    #: the transaction's fund_code (a copy, for the scoped search's index; see above)
    fund_code: Mapped[str] = mapped_column(String(10), nullable=False)
    #: the transaction's transaction_date (a copy, for the search's sort; see above)
    transaction_date: Mapped[date] = mapped_column(Date, nullable=False)

    def __repr__(self) -> str:
        return f"narrative of transaction {self.transaction_id}"


class Transaction(Model):
    """One line of income (a receipt line, an import row, a journal or transfer target).

    ``narrative`` is read from transaction_narrative (a correlated subquery loaded with the
    row); it is written there by ledger.record_income and the import writers, never here. A
    query selecting it without the entity says ``select_from(Transaction)``, so that the
    subquery correlates."""

    __tablename__ = "income_transaction"
    __table_args__ = (
        CheckConstraint("amount > 0", name="ck_income_transaction_amount"),
        Index("ix_income_transaction_fund_date", "fund_code", "transaction_date"),
        # the date range's rows in date order (lists, reports); on PostgreSQL it also carries
        # every column the dashboard reads, so its figures are one index-only range scan of the
        # window whatever the table's size or the rows' order on disk
        Index("ix_income_transaction_date_id", "transaction_date", "id",
              postgresql_include=list(DASHBOARD_COLUMNS)),
        Index("ix_income_transaction_method_date", "payment_method_code", "transaction_date"),
        # reference search, and the imports' duplicate look-up by date, reference and amount
        Index("ix_income_transaction_reference_date_amount", "account_reference",
              "transaction_date", "amount"),
        Index("ix_income_transaction_source_transaction_id", "source_transaction_id",
              **_where_not_null("source_transaction_id")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # always its posting group's number: found and sorted through posting_group.number's index
    receipt_number: Mapped[str | None] = mapped_column(String(20))
    fund_code: Mapped[str] = mapped_column(String(10), nullable=False)
    account_reference: Mapped[str | None] = mapped_column(String(30))
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    vat_code: Mapped[str | None] = mapped_column(String(10))
    vat_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    payment_method_code: Mapped[str] = mapped_column(String(10), nullable=False)
    transaction_date: Mapped[date] = mapped_column(Date, nullable=False)
    external_reference: Mapped[str | None] = mapped_column(String(100))
    office_code: Mapped[str | None] = mapped_column(String(10), index=True)
    created_by: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # the import's transactions are found through their posting groups (of_import): an index
    # here would cost every imported row an index entry for nothing
    import_id: Mapped[int | None] = mapped_column(Integer)
    posting_group_id: Mapped[int] = mapped_column(ForeignKey("posting_group.id"), nullable=False,
                                                  index=True)
    source_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("income_transaction.id"))

    posting_group: Mapped[PostingGroup] = relationship(foreign_keys=[posting_group_id])
    source_transaction: Mapped["Transaction | None"] = relationship(
        remote_side=[id], foreign_keys=[source_transaction_id])
    #: read only: the narrative kept in transaction_narrative (None: none, or erased)
    narrative: Mapped[str | None] = column_property(
        select(TransactionNarrative.narrative)
        .where(TransactionNarrative.transaction_id == id)
        .correlate_except(TransactionNarrative).scalar_subquery())

    @classmethod
    def of_import(cls, import_id: int):
        """WHERE clause: the transactions an import posted (by its posting groups, whose
        import_id is indexed; a transaction's import_id is always its group's)."""
        return cls.posting_group_id.in_(
            select(PostingGroup.id).where(PostingGroup.import_id == import_id))

    def __repr__(self) -> str:
        return f"{self.receipt_number or self.id} {self.fund_code}/{self.account_reference}"


class LedgerLine(Model):
    """One signed leg of a posting group: debit > 0, credit < 0, never zero."""

    __tablename__ = "ledger_line"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="ck_ledger_line_nonzero"),
        CheckConstraint(ACCOUNT_CHECK, name="ck_ledger_line_account"),
        # balances by account, fund and account reference; BANK lines (half the table) are
        # left out: no query narrows by them (a query adds NOT_BANK, word for word, to use the index)
        Index("ix_ledger_line_account_fund", "account", "fund_code", "account_reference",
              **partial_index("account <> 'BANK'")),
        Index("ix_ledger_line_transaction_id", "transaction_id",
              **_where_not_null("transaction_id")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("posting_group.id"), nullable=False,
                                          index=True)
    account: Mapped[str] = mapped_column(String(20), nullable=False)
    fund_code: Mapped[str | None] = mapped_column(String(10))
    account_reference: Mapped[str | None] = mapped_column(String(30))
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("income_transaction.id"))

    group: Mapped[PostingGroup] = relationship(back_populates="lines")

    def __repr__(self) -> str:
        return f"{self.account}:{self.fund_code or ''}:{self.account_reference or ''} {self.amount}"


class NumberSequence(Model):
    """Last number issued per prefix (R receipts, J journals, T transfers, ...)."""

    __tablename__ = "number_sequence"

    prefix: Mapped[str] = mapped_column(String(10), primary_key=True)
    last_value: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class IdempotencyKey(Model):
    """A client's Idempotency-Key for a POST and the response first given for it."""

    __tablename__ = "idempotency_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    scope: Mapped[str] = mapped_column(String(50), nullable=False)
    username: Mapped[str] = mapped_column(String(100), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    response_body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    #: SHA-256 of the first request's canonical body: a repeat with another body is refused
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("uq_idempotency_key_scope", "scope", "username", "key", unique=True),)


@database_object
def install_ledger_triggers(conn) -> None:
    """Append-only ledger tables, plus, on PostgreSQL, checks at the end of each statement that
    writes to them: every posting group the statement wrote lines to sums to zero, and every
    reference the statement wrote into the ledger (STATEMENT_CHECKED_REFERENCES) exists.

    Those references are checked per statement, set-based, instead of by foreign keys: a foreign
    key checks and share-locks the referenced row once per inserted row, which was a quarter of
    the database's work in a large import. The lock is what keeps a referenced row from being
    deleted meanwhile; ledger rows can never be deleted, updated or truncated (the append-only
    triggers), so an existence check gives the same guarantee.

    ledger_line.transaction_id may be filled in once (NULL -> id) when the income row it credits
    is recorded; nothing else about a ledger line can change. Nothing about an income row can
    change: its narrative, which may hold a name, is kept in transaction_narrative, whose rows
    retention deletes (erasure) and nothing updates; a narrative's transaction must exist
    (checked per statement on PostgreSQL, like the ledger's references).

    SQLite has no statement-level triggers: a row trigger notes the first ledger line a
    transaction writes, and app/models/sqlite.py checks when it commits that the groups of that
    line and of every later one balance.
    """
    from sqlalchemy import inspect

    # transaction_narrative arrived with migration 0025; earlier migrations run this too
    narratives = inspect(conn).has_table("transaction_narrative")
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("""
            CREATE OR REPLACE FUNCTION ims_ledger_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '%% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql;
        """)
        conn.exec_driver_sql("""
            CREATE OR REPLACE FUNCTION ims_ledger_line_guard() RETURNS trigger AS $$
            BEGIN
              IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'ledger_line is append-only'; END IF;
              IF OLD.transaction_id IS NOT NULL OR NEW.id <> OLD.id
                 OR NEW.group_id <> OLD.group_id OR NEW.account <> OLD.account
                 OR NEW.amount <> OLD.amount
                 OR NEW.fund_code IS DISTINCT FROM OLD.fund_code
                 OR NEW.account_reference IS DISTINCT FROM OLD.account_reference THEN
                RAISE EXCEPTION 'ledger_line is append-only';
              END IF;
              RETURN NEW;
            END; $$ LANGUAGE plpgsql;
        """)
        # Every posting group the statement wrote lines to must exist and sum to zero, and every
        # transaction its lines credit must exist: one probe of an index per group and per
        # transaction (aggregates in LATERAL subqueries, so the planner cannot turn a probe into
        # a scan of the whole table; EXECUTE plans afresh, for the tables as they are now).
        conn.exec_driver_sql("""
            CREATE OR REPLACE FUNCTION ims_ledger_groups_balanced() RETURNS trigger AS $$
            DECLARE bad record;
            BEGIN
              IF TG_OP = 'INSERT' THEN
                EXECUTE 'SELECT g.group_id, s.total, e.found
                         FROM (SELECT DISTINCT group_id FROM ims_added) g
                         CROSS JOIN LATERAL (SELECT COALESCE(SUM(l.amount), 0) AS total
                                             FROM ledger_line l WHERE l.group_id = g.group_id) s
                         CROSS JOIN LATERAL (SELECT count(*) AS found FROM posting_group p
                                             WHERE p.id = g.group_id) e
                         WHERE s.total <> 0 OR e.found = 0 LIMIT 1' INTO bad;
                IF bad.group_id IS NOT NULL AND bad.found = 0 THEN
                  RAISE EXCEPTION 'ledger_line refers to posting group %%, which does not exist',
                    bad.group_id USING ERRCODE = 'foreign_key_violation';
                END IF;
                IF bad.group_id IS NOT NULL THEN
                  RAISE EXCEPTION 'posting group %% does not balance (sum %%)',
                    bad.group_id, bad.total;
                END IF;
              END IF;
              EXECUTE 'SELECT a.transaction_id FROM (SELECT DISTINCT transaction_id FROM ims_added
                                                   WHERE transaction_id IS NOT NULL) a
                       CROSS JOIN LATERAL (SELECT count(*) AS found FROM income_transaction t
                                           WHERE t.id = a.transaction_id) e
                       WHERE e.found = 0 LIMIT 1' INTO bad;
              IF bad.transaction_id IS NOT NULL THEN
                RAISE EXCEPTION 'ledger_line refers to transaction %%, which does not exist',
                  bad.transaction_id USING ERRCODE = 'foreign_key_violation';
              END IF;
              RETURN NULL;
            END; $$ LANGUAGE plpgsql;
        """)
        conn.exec_driver_sql("""
            CREATE OR REPLACE FUNCTION ims_transaction_groups_exist() RETURNS trigger AS $$
            DECLARE missing integer;
            BEGIN
              EXECUTE 'SELECT a.posting_group_id FROM (SELECT DISTINCT posting_group_id
                                                      FROM ims_new_income) a
                       CROSS JOIN LATERAL (SELECT count(*) AS found FROM posting_group p
                                           WHERE p.id = a.posting_group_id) e
                       WHERE e.found = 0 LIMIT 1' INTO missing;
              IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'income_transaction refers to posting group %%, which does not exist',
                  missing USING ERRCODE = 'foreign_key_violation';
              END IF;
              RETURN NULL;
            END; $$ LANGUAGE plpgsql;
        """)
        for table, column, _ in STATEMENT_CHECKED_REFERENCES:
            if table != "transaction_narrative" or narratives:
                conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS "
                                     f"{table}_{column}_fkey")
        # no change at all to a posting group or an income row (a narrative, which may hold a
        # name, is not in the row: transaction_narrative, below)
        for table in ("posting_group", "income_transaction"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            conn.exec_driver_sql(f"""
                CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION ims_ledger_append_only()
            """)
        # (0019 to 0020: the income row's guard let retention set its narrative to NULL)
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS ims_income_transaction_guard()")
        for table in ("posting_group", "income_transaction", "ledger_line"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            conn.exec_driver_sql(f"""
                CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION ims_ledger_append_only()
            """)
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_line_append_only ON ledger_line")
        conn.exec_driver_sql("""
            CREATE TRIGGER ledger_line_append_only BEFORE UPDATE OR DELETE ON ledger_line
            FOR EACH ROW EXECUTE FUNCTION ims_ledger_line_guard()
        """)
        # (before 0004: a deferred constraint trigger per row, summing the group at commit)
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_line_balanced ON ledger_line")
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS ims_posting_group_balanced()")
        conn.exec_driver_sql("""
            CREATE TRIGGER ledger_line_balanced AFTER INSERT ON ledger_line
            REFERENCING NEW TABLE AS ims_added FOR EACH STATEMENT
            EXECUTE FUNCTION ims_ledger_groups_balanced()
        """)
        # an UPDATE may only fill in transaction_id (the guard above): check what it filled in
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_line_references ON ledger_line")
        conn.exec_driver_sql("""
            CREATE TRIGGER ledger_line_references AFTER UPDATE ON ledger_line
            REFERENCING NEW TABLE AS ims_added FOR EACH STATEMENT
            EXECUTE FUNCTION ims_ledger_groups_balanced()
        """)
        conn.exec_driver_sql(
            "DROP TRIGGER IF EXISTS income_transaction_references ON income_transaction")
        conn.exec_driver_sql("""
            CREATE TRIGGER income_transaction_references AFTER INSERT ON income_transaction
            REFERENCING NEW TABLE AS ims_new_income FOR EACH STATEMENT
            EXECUTE FUNCTION ims_transaction_groups_exist()
        """)
        if narratives:
            # every narrative's transaction exists (one probe of its primary key per row, per
            # statement: an import writes a chunk's narratives in one statement)
            conn.exec_driver_sql("""
                CREATE OR REPLACE FUNCTION ims_narrative_transactions_exist() RETURNS trigger AS $$
                DECLARE missing integer;
                BEGIN
                  EXECUTE 'SELECT a.transaction_id FROM ims_new_narrative a
                           CROSS JOIN LATERAL (SELECT count(*) AS found FROM income_transaction t
                                               WHERE t.id = a.transaction_id) e
                           WHERE e.found = 0 LIMIT 1' INTO missing;
                  IF missing IS NOT NULL THEN
                    RAISE EXCEPTION 'transaction_narrative refers to transaction %%, which does not exist',
                      missing USING ERRCODE = 'foreign_key_violation';
                  END IF;
                  RETURN NULL;
                END; $$ LANGUAGE plpgsql;
            """)
            conn.exec_driver_sql("""
                CREATE OR REPLACE FUNCTION ims_narrative_unchanged() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION
                  'transaction_narrative is never changed (retention erases a narrative by deleting it)';
                END; $$ LANGUAGE plpgsql;
            """)
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS transaction_narrative_references "
                                 "ON transaction_narrative")
            conn.exec_driver_sql("""
                CREATE TRIGGER transaction_narrative_references AFTER INSERT
                ON transaction_narrative REFERENCING NEW TABLE AS ims_new_narrative
                FOR EACH STATEMENT EXECUTE FUNCTION ims_narrative_transactions_exist()
            """)
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS transaction_narrative_no_update "
                                 "ON transaction_narrative")
            conn.exec_driver_sql("""
                CREATE TRIGGER transaction_narrative_no_update BEFORE UPDATE
                ON transaction_narrative FOR EACH ROW EXECUTE FUNCTION ims_narrative_unchanged()
            """)
    else:
        # (0019 to 0020: income_transaction_no_update let retention set the narrative to NULL)
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS income_transaction_no_update")
        for table in ("posting_group", "income_transaction"):
            for op in ("UPDATE", "DELETE"):
                conn.exec_driver_sql(f"""
                    CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}
                    BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END
                """)
        if narratives:
            conn.exec_driver_sql("""
                CREATE TRIGGER IF NOT EXISTS transaction_narrative_no_update BEFORE UPDATE
                ON transaction_narrative BEGIN SELECT RAISE(ABORT,
                'transaction_narrative is never changed (retention erases a narrative by deleting it)');
                END
            """)
        conn.exec_driver_sql("""
            CREATE TRIGGER IF NOT EXISTS ledger_line_no_delete BEFORE DELETE ON ledger_line
            BEGIN SELECT RAISE(ABORT, 'ledger_line is append-only'); END
        """)
        conn.exec_driver_sql("""
            CREATE TRIGGER IF NOT EXISTS ledger_line_no_update BEFORE UPDATE ON ledger_line
            WHEN OLD.transaction_id IS NOT NULL OR NEW.id <> OLD.id OR NEW.group_id <> OLD.group_id
              OR NEW.account <> OLD.account OR NEW.amount <> OLD.amount
              OR NEW.fund_code IS NOT OLD.fund_code
              OR NEW.account_reference IS NOT OLD.account_reference
            BEGIN SELECT RAISE(ABORT, 'ledger_line is append-only'); END
        """)
        # the first ledger line the transaction under way wrote; its commit checks that the
        # groups of that line and every later one balance (app/models/sqlite.py)
        conn.exec_driver_sql("""
            CREATE TABLE IF NOT EXISTS ledger_commit_check (
                one INTEGER PRIMARY KEY CHECK (one = 1), first_line_id INTEGER NOT NULL)
        """)
        conn.exec_driver_sql("""
            CREATE TRIGGER IF NOT EXISTS ledger_line_commit_check AFTER INSERT ON ledger_line
            WHEN NOT EXISTS (SELECT 1 FROM ledger_commit_check WHERE first_line_id <= NEW.id)
            BEGIN
                INSERT OR REPLACE INTO ledger_commit_check (one, first_line_id) VALUES (1, NEW.id);
            END
        """)


@database_object
def install_search_indexes(conn) -> None:
    """Trigram GIN indexes for "contains" searches on narrative and reference (PostgreSQL).
    The narratives' is on transaction_narrative (migration 0025; before, on income_transaction,
    whose narrative column that migration moved)."""
    if conn.dialect.name != "postgresql":
        return
    from sqlalchemy import inspect

    conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    if inspect(conn).has_table("transaction_narrative"):
        # one index for both searches: by pattern alone (all funds), and by fund and pattern (a
        # user of some fund groups): btree_gin lets a GIN index hold the fund code as well
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS btree_gin")
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_transaction_narrative_trgm")
        conn.exec_driver_sql("""
            CREATE INDEX IF NOT EXISTS ix_transaction_narrative_fund_trgm
            ON transaction_narrative USING gin (fund_code, narrative gin_trgm_ops)
        """)
    conn.exec_driver_sql("""
        CREATE INDEX IF NOT EXISTS ix_income_transaction_reference_trgm
        ON income_transaction USING gin (account_reference gin_trgm_ops)
    """)
