"""A chunk as the writer threads take it: one row per file line, built by the thread that parses
so that a writer only talks to the database."""

from __future__ import annotations

from dataclasses import dataclass

from app.services.imports.rows import Decision, RowContext


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What posting needs of the batch (a writer thread has no ORM copy of it)."""
    id: int
    office_code: str | None
    import_type: str | None = None  # an agent's file debits Agent clearing (clearing.import_debit)
    #: the bank account's ledger dimension on BANK lines (None: the default account)
    bank_reference: str | None = None
    #: the bank statement whose settlement lines are kept for reconciliation
    statement_id: int | None = None
    bank_account_id: int | None = None


@dataclass(frozen=True, slots=True)
class Staged:
    """A chunk ready to write: its rows in the form its database's writer takes (tuples as
    STAGE_COLUMNS for PostgreSQL's COPY; flat VALUES lists for SQLite), posted rows first."""
    rows: list[tuple] | tuple[list, list, list, list]
    n: int
    first_line: int
    last_line: int
    counts: tuple[int, int, int, int]  # rows posted, rows to suspense, their amounts
    #: settlement lines (not posted: kept as statement lines for reconciliation)
    settled: tuple = ()


STAGE_COLUMNS = ("line", "held", "number", "fund_code", "account_reference", "amount",
                 "vat_code", "vat_amount", "payment_method_code", "narrative",
                 "transaction_date", "external_reference", "reference_text", "reason")


def stage(writer, session, ctx: RowContext, import_id: int, decisions: list[Decision]) -> Staged:
    """The chunk's decided rows, staged for ``writer`` (app.services.imports.postgres/sqlite)."""
    settled = tuple(d for d in decisions if d.settlement)
    if settled:
        decisions_written = [d for d in decisions if not d.settlement]
    else:
        decisions_written = decisions
    posted = [d for d in decisions_written if not d.suspense]
    held = [d for d in decisions_written if d.suspense]
    rows = writer.stage(session, stage_rows(ctx, import_id, posted, held))
    return Staged(rows, len(decisions_written), decisions[0].line, decisions[-1].line,
                  (len(posted), len(held), sum(d.amount for d in posted),
                   sum(d.amount for d in held)), settled)


def stage_rows(ctx: RowContext, import_id: int, posted: list[Decision], held: list[Decision]):
    """One tuple per row, as STAGE_COLUMNS: what its posting group, transaction or suspense
    item and ledger lines need (posted rows first, then suspense, each in file order).

    A row's posting number is I (receipt) or S (suspense), the import and the file line, e.g.
    I42-1017: unique without a shared counter, and it says where the money came from."""
    funds = ctx.funds
    prefix_i, prefix_s = f"I{import_id}-", f"S{import_id}-"
    for d in posted:
        fund = funds[d.fund_code]
        yield (d.line, False, f"{prefix_i}{d.line}", d.fund_code, d.reference, d.amount,
               fund.vat_code, ctx.vat_amount(fund, d.amount), d.method_code,
               (d.narrative or "")[:500] or None, d.transaction_date,
               (d.external_reference or "")[:100] or None, None, None)
    for d in held:
        yield (d.line, True, f"{prefix_s}{d.line}", d.fund_code if d.fund_code in funds else None,
               None, d.amount, None, 0, None, d.narrative, d.transaction_date, None,
               d.raw_reference.strip()[:200], "; ".join(d.reasons)[:500])
