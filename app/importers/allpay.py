"""allpay-style fixed-width daily file (0-based positions, see DOMAIN.md).

narrative 0-6; reference 7-22; amount 23-31 (pounds with a decimal point); payment type 32;
date 33-42 DD/MM/YYYY. Lines shorter than 43 characters start the trailer, which carries the
total amount and the number of payments; both must agree with the lines read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from app.importers import FileRejected, LineError, Row, Summary, decoded_lines, parse_amount, parse_date, t

DEFAULT_METHODS = {"P": "PO", "T": "PP", "Z": "PZ", "N": "TEL", "B": "WEB", "C": "CASH", "Q": "CHQ"}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse(path: str, summary: Summary, method_map: dict[str, str] | None = None
          ) -> Iterator[Row | LineError]:
    methods = method_map or DEFAULT_METHODS
    state = {"line": 0}
    count = total = 0
    trailer: list[tuple[int, str]] = []
    for text in decoded_lines(path, state):
        n = state["line"]
        line = text.rstrip("\r\n")
        if trailer or (len(line) < 43 and line.strip()):
            if line.strip():
                trailer.append((n, line))
            continue
        if not line.strip():
            continue
        errs = []
        ref = line[7:23].strip()
        letter = line[32]
        d = amount = None
        try:
            amount = parse_amount(line[23:32])
            if amount == 0:
                errs.append(t("Amount must be more than zero."))
        except ValueError as exc:
            errs.append(str(exc))
        try:
            d = parse_date(line[33:43])
        except ValueError as exc:
            errs.append(str(exc))
        if letter not in methods:
            errs.append(t("Payment type %(letter)s is not known.", letter=letter))
        if not ref:
            errs.append(t("The payment reference is blank."))
        if len(line.rstrip()) > 43:
            errs.append(t("The line is longer than 43 characters."))
        if errs:
            yield LineError(n, t("Line %(line)d: %(msg)s", line=n, msg=" ".join(errs)))
            continue
        count += 1
        total += amount
        yield Row(n, d, ref, amount, line[0:7].strip() or None, None, methods[letter], None)
    if count == 0 and not trailer:
        raise FileRejected(t("The file is empty."))
    if not trailer:
        yield LineError(None, t("The trailer (total amount and number of payments) is missing."))
        return
    first = trailer[0][0]
    tokens = _NUMBER.findall(" ".join(text for _, text in trailer))
    amounts = [x for x in tokens if "." in x]
    counts = [x for x in tokens if "." not in x]
    if not amounts or not counts:
        yield LineError(first, t("Line %(line)d: the trailer must give the total amount and the "
                                 "number of payments.", line=first))
        return
    try:
        t_total = parse_amount(amounts[0])
    except ValueError as exc:
        yield LineError(first, t("Line %(line)d: %(msg)s", line=first, msg=str(exc)))
        return
    t_count = int(counts[-1])
    if t_total != total or t_count != count:
        yield LineError(first, t(
            "Line %(line)d: the trailer says %(tc)d payments totalling £%(tt)s but the file has "
            "%(c)d totalling £%(tot)s.", line=first, tc=t_count, tt=f"{t_total / 100:.2f}",
            c=count, tot=f"{total / 100:.2f}"))
        return
    summary.control = t("Trailer: %(c)d payments, £%(tot)s – agrees.", c=count,
                        tot=f"{total / 100:.2f}")
