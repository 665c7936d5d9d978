"""SWIFT MT940 statements, read with the maintained `mt-940` package.

Credits (C, and reversal-of-debit RD) become rows. UK dialects: the payer's reference is in the
:61: customer reference (unless NONREF) or else in the :86: narrative. Each statement's opening
balance plus the movements must equal its closing balance (control total).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import mt940

from app.importers import FileRejected, LineError, Row, Summary, decoded_lines, t


def _statements(path: str) -> Iterator[tuple[int, list[str]]]:
    """Split the file into statements (each starts at a :20: line), keeping line numbers."""
    state = {"line": 0}
    block: list[str] = []
    start = 1
    for text in decoded_lines(path, state):
        line = text.rstrip("\r\n")
        if line.startswith(":20:") and any(x.startswith(":61:") or x.startswith(":60") for x in block):
            yield start, block
            block, start = [], state["line"]
        if not block:
            start = state["line"]
        block.append(line)
    if block:
        yield start, block


def _pence(amount) -> int:
    return int((Decimal(amount.amount) * 100).to_integral_value())


def parse(path: str, summary: Summary) -> Iterator[Row | LineError]:
    total_credits = 0
    credits = 0
    statements = 0
    for start, lines in _statements(path):
        text = "\n".join(lines)
        if ":61:" not in text and ":60F:" not in text and ":60M:" not in text:
            if text.strip().strip("-").strip():
                yield LineError(start, t("Line %(line)d: not an MT940 statement.", line=start))
            continue
        statements += 1
        line61 = [start + i for i, x in enumerate(lines) if x.startswith(":61:")]
        try:
            trs = mt940.models.Transactions()
            trs.parse(text)
        except Exception as exc:  # the library raises various errors on malformed input
            yield LineError(start, t("Line %(line)d: the statement cannot be read (%(err)s).",
                                     line=start, err=str(exc)[:200]))
            continue
        items = list(trs)
        if len(items) != len(line61):
            yield LineError(start, t("Line %(line)d: some :61: lines cannot be read.", line=start))
            continue
        movement = 0
        for n, tr in zip(line61, items):
            data = tr.data
            amount = _pence(data["amount"])
            movement += amount
            status = data.get("status") or ""
            if data.get("currency") not in (None, "GBP"):
                yield LineError(n, t("Line %(line)d: currency %(ccy)s is not sterling.", line=n,
                                     ccy=data.get("currency")))
                continue
            if amount <= 0 or status not in ("C", "RD"):
                summary.skipped += 1
                if amount < 0:  # a debit, kept for reconciliation
                    details = (data.get("transaction_details") or "").replace("\n", " ").strip()
                    d = data.get("date")
                    summary.add_debit(Row(n, date(d.year, d.month, d.day), details[:100], -amount,
                                          details or None, None, None,
                                          data.get("bank_reference") or None))
                continue
            details = (data.get("transaction_details") or "").replace("\n", " ").strip()
            cref = (data.get("customer_reference") or "").strip()
            ref = cref if cref and cref.upper() != "NONREF" else details
            d = data.get("date")
            credits += 1
            total_credits += amount
            yield Row(n, date(d.year, d.month, d.day),
                      ref[:100], amount, details or None, None, "BACS",
                      data.get("bank_reference") or None)
        opening = trs.data.get("final_opening_balance") or trs.data.get("intermediate_opening_balance")
        closing = trs.data.get("final_closing_balance") or trs.data.get("intermediate_closing_balance")
        if opening is not None and summary.opening_balance is None:
            summary.opening_balance = _pence(opening.amount)
        if closing is not None:
            summary.closing_balance = _pence(closing.amount)
            cd = getattr(closing, "date", None)
            if cd is not None:
                summary.statement_date = date(cd.year, cd.month, cd.day)
        if opening is not None and closing is not None:
            o, c = _pence(opening.amount), _pence(closing.amount)
            if o + movement != c:
                yield LineError(start, t(
                    "Line %(line)d: opening balance %(o)s plus the movements %(m)s does not equal "
                    "the closing balance %(c)s.", line=start, o=f"{o / 100:.2f}",
                    m=f"{movement / 100:.2f}", c=f"{c / 100:.2f}"))
                continue
    if statements == 0:
        raise FileRejected(t("This is not an MT940 file (no statements found)."))
    if credits == 0:
        yield LineError(None, t("The file has no credit lines."))
        return
    summary.control = t("Balances agree: opening + movements = closing in %(n)d statement(s); "
                        "%(c)d credits, £%(tot)s.", n=statements, c=credits,
                        tot=f"{total_credits / 100:.2f}")
