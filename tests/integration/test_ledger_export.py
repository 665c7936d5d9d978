"""`ims export-ledger --date D`: the day's lines, balanced, for the general ledger."""

import csv
import datetime as dt
import io
import subprocess
import sys

from app.services.ledger_export import write_ledger_csv
from app.services.receipts import take_receipt


def test_export_contains_todays_receipt_and_balances(session):
    result = take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": "EXPORT-1",
                                           "amount": "42.17", "narrative": "export test"}],
                          payment_method_code="CASH", actor="cashier")
    number = result.receipt_number if hasattr(result, "receipt_number") else result["receipt_number"]
    out = io.StringIO()
    today = dt.datetime.now(dt.timezone.utc).astimezone().date()
    lines, debits, credits = write_ledger_csv(session, today, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert lines == len(rows) > 0
    assert debits == credits
    mine = [r for r in rows if r["posting_group"] == number]
    assert {(r["account"], r["debit"], r["credit"]) for r in mine} == {
        ("CASH_IN_HAND", "42.17", ""), ("FUND", "", "42.17")}  # cash: Cash in hand (issue 17)
    assert [r["gl_code"] for r in mine if r["account"] == "FUND"] == ["4002-TW"]


def test_cli_export(app, tmp_path):
    import os

    env = {**os.environ, "IMS_ENV": "testing", "TEST_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"]}
    target = tmp_path / "ledger.csv"
    day = dt.date.today().isoformat()
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "run", "ims", "export-ledger",
                           "--date", day, "-o", str(target)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert target.read_text().startswith("posting_group,kind,posted_at")
    bad = subprocess.run([sys.executable, "-m", "flask", "--app", "run", "ims", "export-ledger",
                          "--date", "25/11/2026"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "Invalid value" in bad.stderr
