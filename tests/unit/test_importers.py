"""Parsers: every format, and the bad input each must name (no database)."""

from __future__ import annotations

import os
from datetime import date
from types import SimpleNamespace

import pytest

from app.importers import FileRejected, LineError, Row, Summary, parse_amount, parse_file

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "imports")


def fx(name):
    return os.path.join(FIX, name)


def run(fmt, path, profile=None):
    summary = Summary()
    items = list(parse_file(fmt, path, summary, profile))
    rows = [i for i in items if isinstance(i, Row)]
    errors = [i for i in items if isinstance(i, LineError)]
    return rows, errors, summary


def write(tmp_path, content, name="f.csv"):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(p)


HEAD = "transaction_date,account_reference,amount,narrative\n"


def test_ims_csv_sample_quoted_commas_and_newlines():
    rows, errors, _ = run("ims_csv", fx("ims_sample.csv"))
    assert errors == []
    assert [(r.line, r.reference, r.amount, r.fund_code) for r in rows] == [
        (2, "TW100001", 12500, "TWS"), (3, "TW100002", 8050, "TWS"), (5, "UNMATCHED-1", 999, None)]
    assert rows[0].narrative == "Trade waste, January" and rows[0].external_reference == "E2E-1"
    assert rows[1].narrative == "Two-line\nnarrative" and rows[1].transaction_date == date(2026, 1, 5)


def test_ims_csv_bom_is_accepted():
    rows, errors, _ = run("ims_csv", fx("ims_bom.csv"))
    assert errors == [] and rows[0].amount == 100


def test_ims_csv_latin1_is_refused_naming_the_line():
    with pytest.raises(FileRejected) as exc:
        run("ims_csv", fx("ims_latin1.csv"))
    assert exc.value.line == 2 and "UTF-8" in exc.value.message


def test_empty_and_header_only(tmp_path):
    with pytest.raises(FileRejected, match="empty"):
        run("ims_csv", write(tmp_path, ""))
    with pytest.raises(FileRejected, match="empty"):
        run("ims_csv", write(tmp_path, "\n\n"))
    rows, errors, _ = run("ims_csv", write(tmp_path, HEAD))
    assert rows == [] and "no payment lines" in errors[0].message


def test_missing_and_unknown_header_columns(tmp_path):
    with pytest.raises(FileRejected, match="missing column.*amount"):
        run("ims_csv", write(tmp_path, "transaction_date,account_reference\n2026-01-01,A\n"))
    with pytest.raises(FileRejected, match="unknown column.*colour"):
        run("ims_csv", write(tmp_path, "transaction_date,account_reference,amount,colour\n"))


@pytest.mark.parametrize("line,needle", [
    ("2026-01-05,A,1.234,x", "more than two decimal places"),
    ("2026-01-05,A,12abc,x", "not a number"),
    ("2026-01-05,A,,x", "not a number"),
    ("2026-01-05,A,-5.00,x", "negative"),
    ("2026-01-05,A,0.00,x", "more than zero"),
    ("2026-02-30,A,1.00,x", "not a real date"),
    ("31/04/2026,A,1.00,x", "not a real date"),
    ("Jan 5 2026,A,1.00,x", "YYYY-MM-DD"),
    ("2026-01-05,A,1.00", "columns"),
    ("2026-01-05,A,1.00,x,y", "columns"),
])
def test_bad_lines_are_named(tmp_path, line, needle):
    rows, errors, _ = run("ims_csv", write(tmp_path, HEAD + "2026-01-05,OK,1.00,x\n" + line + "\n"))
    assert len(rows) == 1 and len(errors) == 1
    assert errors[0].line == 3 and needle in errors[0].message and "Line 3" in errors[0].message


def test_unterminated_quote_is_an_error(tmp_path):
    rows, errors, _ = run("ims_csv", write(tmp_path, HEAD + '2026-01-05,A,1.00,"open\n'))
    assert errors and errors[0].line == 2


def test_binary_file_is_refused():
    with pytest.raises(FileRejected, match="binary"):
        run("ims_csv", fx("binary.bin"))


def test_parse_amount_is_money_not_float():
    assert parse_amount("0.1") == 10 and parse_amount("1,234.56", thousands=True) == 123456
    with pytest.raises(ValueError):
        parse_amount("1e3")
    with pytest.raises(ValueError):
        parse_amount("NaN")


def _profile(**kw):
    base = dict(delimiter=",", has_header=True, skip_rows=2, date_column="Date",
                date_format="%d/%m/%Y", sign_convention="signed", amount_column="Amount",
                credit_column=None, debit_column=None, reference_column="Memo",
                narrative_column="Subcategory", fund_column=None, payment_method_code="BACS")
    base.update(kw)
    return SimpleNamespace(**base)


def test_bank_csv_with_profile_skips_debits():
    rows, errors, summary = run("bank_csv", fx("bank_barclays.csv"), _profile())
    assert errors == []
    assert [(r.line, r.reference, r.amount) for r in rows] == [
        (4, "TW200001  J SMITH", 12500), (6, "TW200002 ACME, LTD", 125000)]
    assert summary.skipped == 1


def test_bank_csv_split_columns_and_negative_sign(tmp_path):
    path = write(tmp_path, "Date;Ref;In;Out\n2026-01-02;AB1;;5.00\n2026-01-02;AB2;7.50;\n")
    prof = _profile(delimiter=";", skip_rows=0, date_format="%Y-%m-%d", sign_convention="split",
                    credit_column="In", debit_column="Out", reference_column="Ref",
                    narrative_column=None, amount_column=None)
    rows, errors, _ = run("bank_csv", path, prof)
    assert errors == [] and [(r.reference, r.amount) for r in rows] == [("AB2", 750)]
    path = write(tmp_path, "02/01/2026,X1,-12.00\n02/01/2026,X2,3.00\n", "n.csv")
    prof = _profile(has_header=False, skip_rows=0, date_column="1", reference_column="2",
                    amount_column="3", narrative_column=None, sign_convention="signed_negative")
    rows, errors, _ = run("bank_csv", path, prof)
    assert [(r.reference, r.amount) for r in rows] == [("X1", 1200)]


def test_bank_csv_bad_date_and_missing_column(tmp_path):
    path = write(tmp_path, "Date,Amount,Memo\n2026-01-02,1.00,A\n")
    rows, errors, _ = run("bank_csv", path, _profile(skip_rows=0, narrative_column=None))
    assert errors[0].line == 2 and "%d/%m/%Y" in errors[0].message
    with pytest.raises(FileRejected, match="Subcategory"):
        run("bank_csv", path, _profile(skip_rows=0))


def test_camt053_credit_entries_and_control_totals():
    rows, errors, summary = run("camt053", fx("camt053_sample.xml"))
    assert errors == []
    assert [(r.reference, r.amount, r.external_reference, r.transaction_date) for r in rows] == [
        ("TW300001", 12500, "E2E-0001", date(2026, 1, 5)),
        ("PAYMENT FOR TW300002", 9050, "E2E-0002", date(2026, 1, 5))]
    assert rows[0].narrative == "J SMITH TW300001" and rows[0].line == 12
    assert summary.skipped == 1 and "agree" in summary.control


def test_camt053_control_total_mismatch(tmp_path):
    text = open(fx("camt053_sample.xml")).read().replace("<Sum>215.50</Sum>", "<Sum>215.51</Sum>")
    rows, errors, _ = run("camt053", write(tmp_path, text, "c.xml"))
    assert errors and "disagree" in errors[-1].message


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml"])
def test_camt053_refuses_entities(name):
    with pytest.raises(FileRejected, match="DTD|entit"):
        run("camt053", fx(name))


def test_camt053_not_well_formed(tmp_path):
    with pytest.raises(FileRejected) as exc:
        run("camt053", write(tmp_path, "<Document>\n<Ntry>\n</Document>\n", "bad.xml"))
    assert exc.value.line == 3


def test_mt940_credits_narrative_and_balances():
    rows, errors, summary = run("mt940", fx("mt940_sample.sta"))
    assert errors == []
    assert [(r.line, r.reference, r.amount) for r in rows] == [
        (5, "TW400001", 12500), (9, "TW400002 ACME LTD PAYMENT JANUARY", 9050)]
    assert rows[0].narrative == "J SMITH TRADE WASTE" and summary.skipped == 1
    assert "Balances agree" in summary.control


def test_mt940_balance_mismatch(tmp_path):
    text = open(fx("mt940_sample.sta")).read().replace(":62F:C260105GBP1175,50", ":62F:C260105GBP1175,51")
    rows, errors, _ = run("mt940", write(tmp_path, text, "m.sta"))
    assert errors and "closing balance" in errors[0].message and errors[0].line == 1


def test_mt940_not_mt940(tmp_path):
    with pytest.raises(FileRejected):
        run("mt940", write(tmp_path, "hello\nworld\n", "m.sta"))


def test_allpay_fixed_width_and_trailer():
    rows, errors, summary = run("allpay", fx("allpay_sample.txt"))
    assert errors == []
    assert [(r.narrative, r.reference, r.amount, r.payment_method_code) for r in rows] == [
        ("SMITHJ", "TW500001", 1250, "PO"), ("JONESA", "TW500002", 3000, "PP"),
        ("EVANSR", "UNKNOWN-REF", 725, "PZ")]
    assert "agrees" in summary.control


def test_allpay_trailer_disagrees(tmp_path):
    text = open(fx("allpay_sample.txt")).read().replace("000049.75 000003", "000049.75 000004")
    rows, errors, _ = run("allpay", write(tmp_path, text, "a.txt"))
    assert errors and errors[0].line == 4 and "trailer says 4" in errors[0].message
    text = open(fx("allpay_sample.txt")).read().replace("TOTAL 000049.75 000003\n", "")
    rows, errors, _ = run("allpay", write(tmp_path, text, "b.txt"))
    assert errors and "trailer" in errors[0].message


def test_allpay_bad_line(tmp_path):
    text = open(fx("allpay_sample.txt")).read().replace("12.50P05/01/2026", "12.50X31/02/2026")
    rows, errors, _ = run("allpay", write(tmp_path, text, "a.txt"))
    assert errors[0].line == 1 and "not a real date" in errors[0].message \
        and "Payment type X" in errors[0].message


def test_statements_keep_debit_lines_and_balances_for_reconciliation(tmp_path):
    """MT940 and a bank CSV with a balance column: debits and opening/closing balances kept
    in the summary (credits are the rows, as before)."""
    import datetime as _dt
    import os as _os
    from types import SimpleNamespace

    from app.importers import Row as _Row
    from app.importers import Summary as _Summary
    from app.importers import parse_file as _parse

    here = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.dirname(
        _os.path.abspath(__file__)))), "app", "importers", "samples", "mt940_sample.sta")
    s = _Summary()
    rows = [r for r in _parse("mt940", here, s) if isinstance(r, _Row)]
    assert [r.amount for r in rows] == [12500, 9050]
    assert [(d.amount, d.reference) for d in s.debits] == [(4000, "DIRECT DEBIT BT GROUP")]
    assert (s.opening_balance, s.closing_balance) == (100000, 117550)
    assert s.statement_date == _dt.date(2026, 1, 5)
    path = tmp_path / "bank.csv"
    path.write_text("Date,Ref,Amount,Balance\n05/01/2026,TW1,10.00,110.00\n"
                    "05/01/2026,CHARGES,-2.50,107.50\n06/01/2026,TW2,5.00,112.50\n")
    profile = SimpleNamespace(skip_rows=0, delimiter=",", has_header=True, date_column="Date",
                              reference_column="Ref", narrative_column=None, fund_column=None,
                              sign_convention="signed", amount_column="Amount",
                              credit_column=None, debit_column=None, date_format="%d/%m/%Y",
                              payment_method_code="BACS", balance_column="Balance")
    s = _Summary()
    rows = [r for r in _parse("bank_csv", str(path), s, profile) if isinstance(r, _Row)]
    assert [r.amount for r in rows] == [1000, 500]
    assert [d.amount for d in s.debits] == [250]
    assert (s.opening_balance, s.closing_balance) == (10000, 11250)
