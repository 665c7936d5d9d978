"""ISO 20022 camt.053 bank-to-customer statements: credit entries only.

Parsed with defusedxml's SAX parser, streaming, with line numbers: DTDs, entity declarations
and external entities are refused (billion laughs, XXE).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from xml.sax import SAXParseException
from xml.sax.expatreader import ExpatLocator
from xml.sax.handler import ContentHandler

import defusedxml
import defusedxml.sax

from app.importers import FileRejected, LineError, Row, Summary, parse_amount, parse_date, t


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


class _Handler(ContentHandler):
    def __init__(self, out: deque, summary: Summary):
        super().__init__()
        self.out = out
        self.summary = summary
        self.path: list[str] = []
        self.text: list[str] = []
        self.entry = None
        self.tx = None
        self.credit_count = 0
        self.credit_total = 0
        self.declared_count = None
        self.declared_sum = None
        self.attrs = None
        self.bal = None

    def line(self) -> int:
        return self._locator.getLineNumber() if self._locator else 0

    def startElement(self, name, attrs):  # noqa: N802
        tag = _local(name)
        self.path.append(tag)
        self.text = []
        self.attrs = attrs
        if tag == "Bal" and self.entry is None:
            self.bal = {}
        if tag == "Ntry":
            self.entry = {"line": self.line(), "txs": [], "ccy": None, "ustrd": []}
        elif tag == "TxDtls" and self.entry is not None:
            self.tx = {"line": self.line(), "ustrd": [], "ref": None, "e2e": None,
                       "amt": None, "name": None}
        if tag == "Amt" and self.entry is not None:
            self._ccy = attrs.get("Ccy")

    def characters(self, content):
        self.text.append(content)

    def endElement(self, name):  # noqa: N802
        tag = _local(name)
        value = "".join(self.text).strip()
        self.text = []
        parent = self.path[-2] if len(self.path) > 1 else ""
        e, tx = self.entry, self.tx
        if e is not None:
            if tx is not None:
                if tag == "Ustrd":
                    tx["ustrd"].append(value)
                elif tag == "Ref" and "CdtrRefInf" in self.path:
                    tx["ref"] = value
                elif tag == "EndToEndId":
                    tx["e2e"] = value
                elif tag == "Amt" and parent in ("TxDtls", "TxAmt", "InstdAmt"):
                    if parent != "InstdAmt" or tx["amt"] is None:
                        tx["amt"] = (value, getattr(self, "_ccy", None))
                elif tag == "Nm" and "Dbtr" in self.path:
                    tx["name"] = value
                elif tag == "TxDtls":
                    e["txs"].append(tx)
                    self.tx = None
            else:
                if tag == "Amt" and parent == "Ntry":
                    e["amt"] = value
                    e["ccy"] = getattr(self, "_ccy", None)
                elif tag == "CdtDbtInd" and parent == "Ntry":
                    e["ind"] = value
                elif tag == "Dt" and parent in ("BookgDt", "ValDt"):
                    e.setdefault(parent, value)
                elif tag == "DtTm" and parent in ("BookgDt", "ValDt"):
                    e.setdefault(parent, value[:10])
                elif tag == "Cd" and parent == "Sts" or (tag == "Sts" and parent == "Ntry" and value):
                    e["sts"] = value
                elif tag == "Ustrd":
                    e["ustrd"].append(value)
                elif tag == "AcctSvcrRef" and parent == "Ntry":
                    e["svcr"] = value
                elif tag == "Ntry":
                    self._emit(e)
                    self.entry = None
        elif self.bal is not None:
            b = self.bal
            if tag == "Cd" and "Tp" in self.path:
                b["type"] = value
            elif tag == "Amt" and parent == "Bal":
                b["amt"] = value
            elif tag == "CdtDbtInd" and parent == "Bal":
                b["ind"] = value
            elif tag in ("Dt", "DtTm") and parent == "Dt":
                b["date"] = value[:10]
            elif tag == "Bal":
                self._balance(b)
                self.bal = None
        elif parent == "TtlCdtNtries":
            if tag == "NbOfNtries":
                self.declared_count = value
            elif tag == "Sum":
                self.declared_sum = value
        self.path.pop()

    def _balance(self, b: dict) -> None:
        """Opening (OPBD, PRCD) and closing (CLBD) booked balances, for reconciliation."""
        try:
            amount = parse_amount(b.get("amt") or "")
        except ValueError:
            return
        if b.get("ind") == "DBIT":
            amount = -amount
        kind = (b.get("type") or "").upper()
        if kind in ("OPBD", "PRCD") and self.summary.opening_balance is None:
            self.summary.opening_balance = amount
        elif kind == "CLBD":
            self.summary.closing_balance = amount
            try:
                self.summary.statement_date = parse_date(b["date"]) if b.get("date") else None
            except ValueError:
                pass

    def _debit(self, e: dict) -> None:
        """A booked debit entry, kept for reconciliation (bank charges, returned items)."""
        try:
            amount = parse_amount(e.get("amt") or "")
            d = parse_date(e.get("BookgDt") or e.get("ValDt") or "")
        except ValueError:
            return
        if amount <= 0:
            return
        text = " ".join(x for x in e["ustrd"] if x) or e.get("svcr") or ""
        self.summary.add_debit(Row(e["line"], d, text.strip()[:100], amount, text or None,
                                   None, None, e.get("svcr")))

    def _emit(self, e: dict) -> None:
        n = e["line"]
        if e.get("ind") != "CRDT":
            self.summary.skipped += 1
            if e.get("ind") == "DBIT" and (e.get("sts") or "BOOK") == "BOOK":
                self._debit(e)
            return
        if e.get("sts") and e["sts"] not in ("BOOK",):
            self.summary.skipped += 1
            return
        self.credit_count += 1
        errs = []
        try:
            entry_amount = parse_amount(e.get("amt") or "")
            self.credit_total += entry_amount
        except ValueError as exc:
            self.out.append(LineError(n, t("Line %(line)d: %(msg)s", line=n, msg=str(exc))))
            return
        if e.get("ccy") and e["ccy"] != "GBP":
            errs.append(t("Currency %(ccy)s is not sterling.", ccy=e["ccy"]))
        raw_date = e.get("BookgDt") or e.get("ValDt")
        d = None
        if not raw_date:
            errs.append(t("The entry has no booking date."))
        else:
            try:
                d = parse_date(raw_date)
            except ValueError as exc:
                errs.append(str(exc))
        txs = e["txs"] or [{"line": n, "ustrd": e["ustrd"], "ref": None, "e2e": None,
                            "amt": None, "name": None}]
        amounts = []
        for tx in txs:
            if tx["amt"] is None and len(txs) == 1:
                amounts.append(entry_amount)
                continue
            try:
                amounts.append(parse_amount(tx["amt"][0] if tx["amt"] else ""))
            except ValueError as exc:
                errs.append(str(exc))
        if not errs and sum(amounts) != entry_amount:
            errs.append(t("The transaction amounts do not add up to the entry amount."))
        if errs:
            self.out.append(LineError(n, t("Line %(line)d: %(msg)s", line=n, msg=" ".join(errs))))
            return
        for tx, amount in zip(txs, amounts):
            remittance = " ".join(x for x in tx["ustrd"] if x) or None
            ref = tx["ref"] or remittance or (tx["e2e"] if tx["e2e"] != "NOTPROVIDED" else "") or ""
            narrative = " ".join(x for x in (tx.get("name"), remittance) if x) or None
            e2e = tx["e2e"] if tx["e2e"] and tx["e2e"] != "NOTPROVIDED" else None
            self.out.append(Row(tx["line"], d, ref.strip()[:100], amount, narrative, None,
                                "BACS", e2e or e.get("svcr")))


def parse(path: str, summary: Summary) -> Iterator[Row | LineError]:
    out: deque = deque()
    handler = _Handler(out, summary)
    parser = defusedxml.sax.make_parser()
    parser.forbid_dtd = True
    parser.setContentHandler(handler)
    handler.setDocumentLocator(ExpatLocator(parser))
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(65536)
            try:
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
            except defusedxml.DefusedXmlException:
                raise FileRejected(t("The XML file declares a DTD or entities, which are refused "
                                     "for safety (entity expansion / external entities).")) from None
            except SAXParseException as exc:
                raise FileRejected(t("Line %(line)d: the XML is not well formed (%(err)s).",
                                     line=exc.getLineNumber(), err=exc.getMessage()),
                                   exc.getLineNumber()) from None
            while out:
                yield out.popleft()
            if not chunk:
                break
    if handler.credit_count == 0 and summary.skipped == 0:
        yield LineError(None, t("The statement has no entries."))
        return
    if handler.credit_count == 0:
        yield LineError(None, t("The statement has no credit entries."))
        return
    if handler.declared_count is not None or handler.declared_sum is not None:
        ok = True
        if handler.declared_count is not None and handler.declared_count.strip().isdigit():
            ok = ok and int(handler.declared_count) == handler.credit_count
        if handler.declared_sum:
            try:
                ok = ok and parse_amount(handler.declared_sum) == handler.credit_total
            except ValueError:
                ok = False
        if not ok:
            yield LineError(None, t("The statement's credit totals (%(n)s entries, %(s)s) disagree "
                                    "with the entries read (%(c)d, %(tot)s).",
                                    n=handler.declared_count or "?", s=handler.declared_sum or "?",
                                    c=handler.credit_count,
                                    tot=f"{handler.credit_total / 100:.2f}"))
            return
        summary.control = t("Statement credit totals: %(c)d entries, £%(tot)s – agree.",
                            c=handler.credit_count, tot=f"{handler.credit_total / 100:.2f}")
