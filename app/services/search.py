"""Transaction search: filters, paging, sorting, CSV and XLSX export; dashboard figures."""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from sqlalchemy import bindparam, case, func, select, text
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.domain.money import Money
from app.models.ledger import PostingGroup, Transaction, TransactionNarrative
from app.services import income_days
from app.services.receipts import parse_date
from app.services.scope import allowed_fund_codes, condition, restrict, scope_key

SORTABLE = {"id": Transaction.id, "transaction_date": Transaction.transaction_date,
            "amount": Transaction.amount, "receipt_number": Transaction.receipt_number,
            "fund_code": Transaction.fund_code, "account_reference": Transaction.account_reference,
            "payment_method_code": Transaction.payment_method_code,
            "created_by": Transaction.created_by}
MAX_PAGE_SIZE = 500
EXPORT_COLUMNS = ["id", "receipt_number", "transaction_date", "fund_code", "account_reference",
                  "amount", "vat_code", "vat_amount", "payment_method_code", "narrative",
                  "external_reference", "office_code", "created_by", "import_id",
                  "source_transaction_id"]


@dataclass
class SearchFilters:
    receipt_number: str | None = None
    amount: int | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    account_reference: str | None = None
    reference_match: str = "exact"  # exact | contains
    funds: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    user: str | None = None
    office: str | None = None
    narrative: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    import_id: int | None = None
    sort: str = "transaction_date"
    direction: str = "desc"

    def to_args(self) -> dict:
        """Query-string arguments that reproduce this search (for links and exports)."""
        out: dict = {}
        for key in ("receipt_number", "account_reference", "user", "office", "narrative"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.account_reference and self.reference_match != "exact":
            out["reference_match"] = self.reference_match
        for key in ("amount", "amount_min", "amount_max"):
            if getattr(self, key) is not None:
                out[key] = str(Money(getattr(self, key)))
        if self.funds:
            out["fund"] = list(self.funds)
        if self.methods:
            out["method"] = list(self.methods)
        for key in ("date_from", "date_to"):
            if getattr(self, key):
                out[key] = getattr(self, key).isoformat()
        if self.import_id is not None:
            out["import_id"] = str(self.import_id)
        if self.sort != "transaction_date" or self.direction != "desc":
            out["sort"], out["direction"] = self.sort, self.direction
        return out


def _getlist(args: Mapping, key: str) -> list[str]:
    if hasattr(args, "getlist"):
        values = args.getlist(key)
    else:
        v = args.get(key)
        values = v if isinstance(v, list) else ([v] if v else [])
    out = []
    for v in values:
        out.extend(p.strip().upper() for p in str(v).split(",") if p.strip())
    return out


def parse_filters(args: Mapping, parse_money=Money.parse) -> SearchFilters:
    """Filters from query-string arguments; ValidationError naming each bad field. Amounts are
    read by ``parse_money``: the strict parser (the API), or Money.parse_form for the page."""
    errors: dict[str, list[str]] = {}
    f = SearchFilters()

    def text(key, upper=False):
        v = args.get(key)
        v = v.strip() if isinstance(v, str) else ""
        return (v.upper() if upper else v) or None

    f.receipt_number = text("receipt_number", upper=True)
    f.account_reference = text("account_reference", upper=True)
    f.reference_match = text("reference_match") or "exact"
    if f.reference_match not in ("exact", "contains"):
        errors["reference_match"] = ["Choose exact or contains."]
    f.user = text("user")
    f.office = text("office", upper=True)
    f.narrative = text("narrative")
    f.funds = _getlist(args, "fund")
    f.methods = _getlist(args, "method")
    for key in ("amount", "amount_min", "amount_max"):
        v = text(key)
        if v:
            try:
                setattr(f, key, parse_money(v, key).pence)
            except ValidationError as exc:
                errors.update(exc.errors)
    for key in ("date_from", "date_to"):
        v = args.get(key)
        if v:
            try:
                setattr(f, key, parse_date(v, key))
            except ValidationError as exc:
                errors.update(exc.errors)
    v = text("import_id")
    if v:
        if v.isdigit():
            f.import_id = int(v)
        else:
            errors["import_id"] = ["Give an import number."]
    f.sort = text("sort") or "transaction_date"
    if f.sort not in SORTABLE:
        errors["sort"] = [f"Sort by one of: {', '.join(SORTABLE)}."]
    f.direction = text("direction") or "desc"
    if f.direction not in ("asc", "desc"):
        errors["direction"] = ["Use asc or desc."]
    if errors:
        raise ValidationError("The search is not valid: " + "; ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), errors)
    return f


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _narratives_matching(term: str, *also):
    """SELECT of the ids (and ``also``, columns of transaction_narrative) of the transactions
    whose narrative contains ``term`` (any case) and whose fund is in the current user's scope,
    which PostgreSQL finds through transaction_narrative's GIN index on (fund_code, narrative):
    a user of one fund group reads
    only that group's matches, not every fund's (a common surname matches thousands).

    The pattern is written into the statement (escaped, as a literal): each search is planned
    with its value, on which the index's selectivity depends. As a parameter, a statement the
    driver has prepared and run a few times gets a generic plan, which scans every narrative."""
    N = TransactionNarrative
    pattern = bindparam(None, _like(term), type_=N.narrative.type, literal_execute=True)
    stmt = select(N.transaction_id, *also).where(N.narrative.ilike(pattern, escape="\\"))
    return restrict(stmt, N.fund_code).correlate(None)  # the transaction's own fund (a copy)


def filtered(f: SearchFilters):
    """A SELECT of Transaction rows matching f (unsorted)."""
    T = Transaction
    stmt = restrict(select(T), T.fund_code)  # the user's fund groups (app/services/scope.py)
    if f.receipt_number:  # a receipt number is its posting group's number (indexed there)
        stmt = stmt.where(T.posting_group_id == select(PostingGroup.id).where(
            PostingGroup.number == f.receipt_number).scalar_subquery())
    if f.amount is not None:
        stmt = stmt.where(T.amount == f.amount)
    if f.amount_min is not None:
        stmt = stmt.where(T.amount >= f.amount_min)
    if f.amount_max is not None:
        stmt = stmt.where(T.amount <= f.amount_max)
    if f.account_reference:
        if f.reference_match == "contains":
            stmt = stmt.where(T.account_reference.ilike(_like(f.account_reference), escape="\\"))
        else:
            stmt = stmt.where(T.account_reference == f.account_reference)
    if f.funds:
        stmt = stmt.where(T.fund_code.in_(f.funds))
    if f.methods:
        stmt = stmt.where(T.payment_method_code.in_(f.methods))
    if f.user:
        stmt = stmt.where(T.created_by == f.user)
    if f.office:
        stmt = stmt.where(T.office_code == f.office)
    if f.narrative:  # a semi-join on the narratives' own table
        stmt = stmt.where(T.id.in_(_narratives_matching(f.narrative)))
    if f.date_from:
        stmt = stmt.where(T.transaction_date >= f.date_from)
    if f.date_to:
        stmt = stmt.where(T.transaction_date <= f.date_to)
    if f.import_id is not None:
        stmt = stmt.where(T.of_import(f.import_id))
    return stmt


def _ordered(stmt, f: SearchFilters):
    col = SORTABLE[f.sort]
    if f.sort == "receipt_number":  # in the posting groups' number order (their index)
        stmt = stmt.join(PostingGroup, PostingGroup.id == Transaction.posting_group_id)
        col = PostingGroup.number
    if f.direction == "asc":
        return stmt.order_by(col.asc(), Transaction.id.asc())
    return stmt.order_by(col.desc(), Transaction.id.desc())


#: A search counts its matches up to this many; beyond, the page says "more than 10,000" (a
#: count of every match of a broad search at a million rows costs more than the page itself).
COUNT_CAP = 10_000
#: ...and a search by narrative of a user with all funds up to this many. Each match of a text
#: search costs a check of its text (about 3.5 microseconds on PostgreSQL from the trigram
#: index), and a common surname matches tens of thousands of rows at a million: the statement
#: that counts them and picks the page took 38 ms of a 90 ms page counting to 10,001, 19 ms to
#: 1,001, and the newest page is then found by walking back through the dates, where such a word
#: is common. Within a fund group the
#: index narrows the matches to the group's funds, counting them is cheap, and the page is
#: chosen among the matches counted (_narrative_page), while a walk back through the dates
#: would pass over every other group's rows: those searches count to COUNT_CAP.
NARRATIVE_COUNT_CAP = 1_000


def count_cap(f: SearchFilters) -> int:
    """The most search() counts for ``f`` and the current user (read when called: tests lower
    the caps)."""
    if f.narrative and allowed_fund_codes() is None:
        return NARRATIVE_COUNT_CAP
    return COUNT_CAP


_SEQSCAN_OFF = text("SELECT current_setting('enable_seqscan'), "
                    "set_config('enable_seqscan', 'off', true)")
_SEQSCAN_BACK = text("SELECT set_config('enable_seqscan', :was, true)")


@contextmanager
def _index_scans(session: Session):
    """Rule out sequential scans for one statement of a user with all funds on PostgreSQL (see
    _count); a no-op elsewhere. A failure rolls the setting back with its transaction."""
    if session.get_bind().dialect.name != "postgresql" or condition(Transaction.fund_code) \
            is not None:
        yield
        return
    was = session.execute(_SEQSCAN_OFF).first()[0]
    yield
    session.execute(_SEQSCAN_BACK, {"was": was})


def _count(session: Session, f: SearchFilters, base) -> int:
    """How many rows search() finds, up to count_cap(f) + 1.

    A search by narrative alone counts the matching narratives themselves: every narrative has
    its transaction (a reference the database checks) and its transaction's fund, so the count
    is the same without joining income_transaction, which the planner would do for a common
    word's thousands of matches by a scan of that whole table. The fund scope is on the
    narratives' own fund_code (_narratives_matching), read in the same GIN index as the pattern.

    For a user with all funds, PostgreSQL's planner prices a scan of the narrow narratives
    table (stopping at the cap's matches) below the index, but ILIKE costs about half a
    microsecond a row: at a million rows a common surname's count took 76 ms by that scan and 42
    ms by the index (p50, bench/search.py's data), so scans are ruled out for that one
    statement. A scoped count is planned on the index without this (the fund narrows it)."""
    alone = replace(f, narrative=None, sort="transaction_date", direction="desc") == SearchFilters()
    cap = count_cap(f)
    if not (f.narrative and alone):
        return int(session.scalar(select(func.count()).select_from(
            base.order_by(None).limit(cap + 1).subquery())) or 0)
    stmt = select(func.count()).select_from(
        _narratives_matching(f.narrative).limit(cap + 1).subquery())
    with _index_scans(session):
        return int(session.scalar(stmt) or 0)


def _narrative_alone(f: SearchFilters) -> bool:
    """A search by narrative and nothing else, newest (or oldest) first: _narrative_page."""
    return bool(f.narrative) and f.sort in ("transaction_date", "id") and replace(
        f, narrative=None, sort="transaction_date", direction="desc") == SearchFilters()


def _narrative_page(session: Session, f: SearchFilters, page: int, page_size: int):
    """The page of a search by narrative alone, and its count, in one statement: the matching
    narratives (up to count_cap + 1, from the GIN index on PostgreSQL) are counted, the page's
    ids chosen among them by the date and id kept beside each narrative, and only those rows
    read from income_transaction. Before, the count and the page each searched the index, and
    the page looked up every match's income row to sort them by date: a common surname's 6,000
    matches in one fund group of ten at a million rows cost 80-110 ms, now about 40 ms.

    Returns (rows, count), count None when the matches are more than the cap (the page
    chosen among the first cap + 1 would not be the newest: the caller searches again)
    or unknown (no row on a page past the last)."""
    N = TransactionNarrative
    cap = count_cap(f)
    matches = _narratives_matching(f.narrative, N.transaction_date) \
        .limit(cap + 1).cte("matches")
    keys = ([matches.c.transaction_date] if f.sort == "transaction_date" else []) \
        + [matches.c.transaction_id]
    chosen = (select(matches.c.transaction_id)
              .order_by(*(k.asc() if f.direction == "asc" else k.desc() for k in keys))
              .limit(page_size + 1).offset((page - 1) * page_size))
    counted = select(func.count()).select_from(matches).scalar_subquery()
    stmt = _ordered(restrict(select(Transaction, counted), Transaction.fund_code)
                    .where(Transaction.id.in_(chosen)), f)
    with _index_scans(session):
        found = session.execute(stmt).all()
    if not found:
        return [], (0 if page == 1 else None)
    total = int(found[0][1])
    return [row[0] for row in found], (total if total <= cap else None)


@dataclass
class Page:
    rows: list[Transaction]
    total: int  # exact, or the search's count_cap when total_capped
    page: int
    page_size: int
    total_capped: bool = False
    has_next: bool = False

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def search(session: Session, f: SearchFilters, page: int = 1, page_size: int = 50) -> Page:
    page = max(1, int(page or 1))
    page_size = max(1, min(MAX_PAGE_SIZE, int(page_size or 50)))
    base = filtered(f)
    cap = count_cap(f)
    counted = None
    if _narrative_alone(f):
        rows, counted = _narrative_page(session, f, page, page_size)
        if counted is not None:
            return Page(rows[:page_size], counted, page, page_size,
                        has_next=len(rows) > page_size)
        if rows:  # more than the cap's matches: the newest are found by the general page query
            counted = cap + 1
    if counted is None:
        counted = _count(session, f, base)
    rows = session.scalars(_ordered(base, f).limit(page_size + 1)
                           .offset((page - 1) * page_size)).all()
    capped = counted > cap
    return Page(list(rows[:page_size]), min(counted, cap), page, page_size,
                total_capped=capped, has_next=len(rows) > page_size)


def iter_rows(session: Session, f: SearchFilters, batch: int = 2000) -> Iterator[list]:
    """Every matching row as a list of export values, streamed in batches (no row cap).
    Narratives come by an outer join of their table (one pass, not a look-up per row)."""
    N = TransactionNarrative
    cols = [N.narrative if c == "narrative" else getattr(Transaction, c) for c in EXPORT_COLUMNS]
    stmt = _ordered(filtered(f).with_only_columns(*cols).select_from(Transaction)
                    .outerjoin(N, N.transaction_id == Transaction.id), f)
    result = session.execute(stmt.execution_options(yield_per=batch, stream_results=True))
    amount_idx = (EXPORT_COLUMNS.index("amount"), EXPORT_COLUMNS.index("vat_amount"))
    for row in result:
        values = list(row)
        for i in amount_idx:
            values[i] = str(Money(int(values[i] or 0)))
        values[EXPORT_COLUMNS.index("transaction_date")] = values[
            EXPORT_COLUMNS.index("transaction_date")].isoformat()
        yield values


def _safe_cell(value):
    """Neutralise spreadsheet formula injection in text cells."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _numeric(value):
        return "'" + value
    return value


def _numeric(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def csv_stream(session: Session, f: SearchFilters) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EXPORT_COLUMNS)
    yield buf.getvalue()
    buf.seek(0)
    buf.truncate()
    n = 0
    for values in iter_rows(session, f):
        writer.writerow(["" if v is None else _safe_cell(v) for v in values])
        n += 1
        if n % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def xlsx_bytes(session: Session, f: SearchFilters) -> bytes:
    buf = io.BytesIO()
    write_xlsx(session, f, buf)
    return buf.getvalue()


def write_xlsx(session: Session, f: SearchFilters, fh) -> None:
    """Write every matching row to fh as XLSX (openpyxl write-only mode: rows are not kept)."""
    from decimal import Decimal

    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Transactions")
    ws.append(EXPORT_COLUMNS)
    money_idx = (EXPORT_COLUMNS.index("amount"), EXPORT_COLUMNS.index("vat_amount"))
    for values in iter_rows(session, f):
        out = []
        for i, v in enumerate(values):
            out.append(Decimal(v) if i in money_idx else _safe_cell(v))
        ws.append(out)
    wb.save(fh)


# --- dashboard -------------------------------------------------------------------------------

def _income_base(*conditions):
    """Money in (receipts and imports), not reallocations, not reversed, in the user's funds,
    and ``conditions``."""
    scoped = condition(Transaction.fund_code)  # the user's fund groups
    return income_days.income_conditions(*conditions, *(() if scoped is None else (scoped,)))


def dashboard(session: Session, today: dt.date | None = None, *, summaries: bool = True) -> dict:
    """Income today and over the last 30 days, by fund and by method, and receipts counted.

    Past days come from the worker's daily sums (app/services/income_days.py) where they hold:
    summed, and nothing posted to or reversed on that day since. Every other day of the window
    (today, and any day changed since the worker last ran, or all of them without a worker or
    with ``summaries=False``) is summed here from its transactions, in two queries over one
    range of the date index (which on PostgreSQL includes every column they read): one grouped
    by fund, method and whether the day is today, folded here into the four tables, and one
    counting distinct receipts. So the page reads about a thousand summary rows and today's
    transactions, whatever the month's volume or the history's.

    A receipt is counted on the day of its lines (a receipt has one date).
    """
    today = today or dt.date.today()
    start30 = today - dt.timedelta(days=29)
    held = set(income_days.split(session, start30, today)) if summaries else set()
    live = [d for d in (start30 + dt.timedelta(days=k) for k in range(30)) if d not in held]
    base = _income_base(income_days.days_condition(Transaction.transaction_date, live))
    is_today = (Transaction.transaction_date == today).label("is_today")
    rows = session.execute(
        select(Transaction.fund_code, Transaction.payment_method_code, is_today,
               func.sum(Transaction.amount), func.count())
        .where(*base)
        .group_by(Transaction.fund_code, Transaction.payment_method_code, is_today)).all()
    summed, summed_receipts = income_days.summed(session, held, allowed_fund_codes())
    tables = {key: {} for key in ("today_by_fund", "month_by_fund", "today_by_method",
                                  "month_by_method")}

    def add(table, code, amount, count):
        cell = table.setdefault(code, {"code": code, "amount": 0, "count": 0})
        cell["amount"] += amount
        cell["count"] += count

    for fund, method, on_today, amount, count in [*rows, *((f, m, False, a, n)
                                                            for f, m, a, n in summed)]:
        amount, count = int(amount or 0), int(count)
        add(tables["month_by_fund"], fund, amount, count)
        add(tables["month_by_method"], method, amount, count)
        if on_today:
            add(tables["today_by_fund"], fund, amount, count)
            add(tables["today_by_method"], method, amount, count)
    out = {key: sorted(cells.values(), key=lambda c: (-c["amount"], c["code"]))
           for key, cells in tables.items()}
    # receipts counted without reading posting_group: a transaction carries its group's number
    today_receipts, month_receipts = session.execute(
        select(func.count(func.distinct(case((Transaction.transaction_date == today,
                                               Transaction.posting_group_id)))),
               func.count(func.distinct(Transaction.posting_group_id)))
        .where(income_days.receipt_condition(), *base)).one()
    return {
        "today": today, "date_from": start30,
        "today_total": sum(r["amount"] for r in out["today_by_fund"]),
        "month_total": sum(r["amount"] for r in out["month_by_fund"]),
        **out,
        "today_receipts": int(today_receipts or 0),
        "month_receipts": int(month_receipts or 0) + summed_receipts,
        "largest_funds": out["month_by_fund"][:10],
    }


_DASHBOARD_CACHE: dict = {}
_DASHBOARD_LOCK = threading.Lock()


def cached_dashboard(session: Session, max_age: float, today: dt.date | None = None) -> dict:
    """dashboard(), remembered for ``max_age`` seconds per database, day and fund scope in this
    process, so a busy office's home pages cost one computation a period. 0 computes every
    time."""
    today = today or dt.date.today()
    if max_age <= 0:
        return dashboard(session, today)
    key = (str(session.get_bind().url), today, scope_key())
    now = time.monotonic()
    with _DASHBOARD_LOCK:
        hit = _DASHBOARD_CACHE.get(key)
    if hit and now - hit[0] < max_age:
        return hit[1]
    figures = dashboard(session, today)
    with _DASHBOARD_LOCK:
        for old in [k for k in _DASHBOARD_CACHE if k[:2] != key[:2]]:
            del _DASHBOARD_CACHE[old]  # one day, one database: nothing older is worth keeping
        _DASHBOARD_CACHE[key] = (now, figures)
    return figures
