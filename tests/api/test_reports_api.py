"""Reports through the API and the pages: who may read each, bad input, CSV and XLSX content."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from openpyxl import load_workbook

from tests.conftest import login
from tests.integration.test_reports import books  # noqa: F401 (fixture)

REPORTS = ("cash-book", "vat", "income", "approvals", "month-end")
READERS = ("head", "manager", "auditor")
OTHERS = ("admin", "wfadmin", "clerk", "cashier")


@pytest.mark.parametrize("name", REPORTS)
def test_api_role_rules(api, name):
    for user in READERS:
        resp = api(user).get(f"/api/v1/reports/{name}")
        assert resp.status_code == 200, (user, name, resp.data[:300])
        assert resp.json["report"] == name
    for user in OTHERS:
        resp = api(user).get(f"/api/v1/reports/{name}")
        assert resp.status_code == 403, (user, name, resp.status_code)


def test_api_needs_a_login(client):
    assert client.get("/api/v1/reports/vat").status_code == 401


@pytest.mark.parametrize("path", ["/reports/", "/reports/cash-book", "/reports/vat",
                                  "/reports/income", "/reports/approvals", "/reports/month-end"])
def test_page_role_rules(client, path):
    for user in READERS:
        login(client, user)
        assert client.get(path).status_code == 200, (user, path)
    for user in OTHERS:
        login(client, user)
        resp = client.get(path)
        assert resp.status_code in (302, 403), (user, path, resp.status_code)
        if resp.status_code == 302:
            assert "/login" in resp.headers["Location"] or resp.headers["Location"].endswith("/")


def test_report_menu_only_for_readers(client):
    login(client, "auditor")
    assert b'href="/reports/"' in client.get("/", follow_redirects=True).data
    login(client, "cashier")
    assert b'href="/reports/"' not in client.get("/", follow_redirects=True).data


@pytest.mark.parametrize("url,status,field", [
    ("/api/v1/reports/vat?from=2026-02-30", 400, "from"),
    ("/api/v1/reports/vat?from=yesterday", 400, "from"),
    ("/api/v1/reports/vat?from=2026-01-01&to=31/01/2026", 400, "to"),
    ("/api/v1/reports/vat?from=2026-02-01&to=2026-01-01", 422, "to"),
    ("/api/v1/reports/income?from=2024-01-01&to=2025-06-01", 422, "to"),
    ("/api/v1/reports/cash-book?from=2026-01-01&to=2026-03-01", 422, "to"),
    ("/api/v1/reports/approvals?from=0001-01-01&to=0001-01-02", 422, "from"),
    ("/api/v1/reports/vat?from=9999-12-31", 422, "from"),
    ("/api/v1/reports/vat?format=pdf", 400, "format"),
    ("/api/v1/reports/vat?format=zip", 400, "format"),
    ("/api/v1/reports/cash-book?office=NOPE", 422, "office"),
    ("/api/v1/reports/month-end?month=2026-13", 400, "month"),
    ("/api/v1/reports/month-end?month=26-01", 400, "month"),
    ("/api/v1/reports/month-end?from=2026-01-05", 422, "month"),
])
def test_api_bad_input(api, url, status, field):
    resp = api("auditor").get(url)
    assert resp.status_code == status, resp.data[:300]
    assert field in resp.json["errors"] and resp.json["message"]


def test_api_unknown_report(api):
    resp = api("auditor").get("/api/v1/reports/trial-balance-2")
    assert resp.status_code == 404
    assert "no report" in resp.json["message"]


def test_page_bad_input_says_why(client):
    login(client, "manager")
    resp = client.get("/reports/vat?from=2026-02-01&to=2026-01-01")
    assert resp.status_code == 422
    assert b'id="report-error"' in resp.data and b"is before from" in resp.data
    resp = client.get("/reports/vat?from=not-a-date")
    assert resp.status_code == 400 and b"not a date" in resp.data


def test_cash_book_json_csv_and_xlsx(api, books):  # noqa: F811
    day, office = books["today"].isoformat(), books["office"]
    base = f"/api/v1/reports/cash-book?from={day}&office={office}"
    body = api("auditor").get(base).json
    rows = {r["payment_method_code"]: r for r in body["tables"]["cash_book"]["rows"]}
    assert rows["CASH"]["net"] == "180.00" and rows["CASH"]["receipts"] == 3
    assert body["tables"]["cash_book"]["totals"]["net"] == "230.00"
    assert body["office_code"] == office

    resp = api("auditor").get(base + "&format=csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert f'filename="cash-book-{day}.csv"' in resp.headers["Content-Disposition"]
    lines = list(csv.reader(io.StringIO(resp.data.decode("utf-8-sig"))))
    header = lines.index(["Date", "Office", "User", "Method", "Method name", "Lines received",
                          "Received", "Reversals", "Reversed", "Net"])
    assert lines[header + 1] == [day, office, books["user"], "CARD", "Debit/credit card", "1",
                                 "50.00", "0", "0.00", "50.00"]
    assert lines[header + 2] == [day, office, books["user"], "CASH", "Cash", "3", "210.00", "1",
                                 "30.00", "180.00"]
    assert lines[header + 3] == ["Total", "", "", "", "", "4", "260.00", "1", "30.00", "230.00"]

    resp = api("auditor").get(base + "&format=xlsx")
    assert resp.mimetype.endswith("spreadsheetml.sheet")
    ws = load_workbook(io.BytesIO(resp.data))["Daily cash book"]
    cells = [[c.value for c in row] for row in ws.iter_rows()]
    head = cells.index(["Date", "Office", "User", "Method", "Method name", "Lines received",
                        "Received", "Reversals", "Reversed", "Net"])
    cash = cells[head + 2]
    assert cash[0].date() == books["today"] and cash[1:5] == [office, books["user"], "CASH", "Cash"]
    assert cash[5:] == [3, 210, 1, 30, 180]
    assert ws.cell(row=head + 3, column=7).number_format.startswith('"£"#,##0.00')
    assert ws.cell(row=head + 2, column=1).number_format == "DD/MM/YYYY"


def test_month_end_pack_downloads(api, books):  # noqa: F811
    month = books["today"].strftime("%Y-%m")
    resp = api("head").get(f"/api/v1/reports/month-end?month={month}&format=xlsx")
    assert resp.status_code == 200
    wb = load_workbook(io.BytesIO(resp.data))
    assert wb.sheetnames == ["Daily cash book", "VAT report", "Income by fund and GL code",
                             "Approvals report"]
    income = [[c.value for c in row] for row in wb["Income by fund and GL code"].iter_rows()]
    mine = next(r for r in income if r[1] == books["fund"])
    assert mine[:3] == [books["gl"], books["fund"], "Report fund"]
    assert mine[3:7] == [191, 100, 91, pytest.approx(0.91)]
    resp = api("head").get(f"/api/v1/reports/month-end?month={month}&format=csv")
    assert resp.mimetype == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(resp.data))
    assert [n.split("-20")[0] for n in z.namelist()] == ["cash-book", "vat", "income", "approvals"]
    resp = api("head").get(f"/api/v1/reports/month-end?month={month}")
    assert set(resp.json["reports"]) == {"cash-book", "vat", "income", "approvals"}


def test_page_shows_figures_chart_and_downloads(client, books):  # noqa: F811
    login(client, "manager")
    day, office = books["today"].isoformat(), books["office"]
    page = client.get(f"/reports/cash-book?from={day}&office={office}").data.decode()
    assert 'class="ims-report-chart"' in page and "vendor/chartjs/chart.umd.js" in page
    assert "£180.00" in page and "£230.00" in page
    assert "format=xlsx" in page and "data-ims-print" in page
    resp = client.get(f"/reports/cash-book?from={day}&office={office}&format=xlsx")
    assert resp.status_code == 200 and resp.data[:2] == b"PK"


def test_page_in_welsh(client, books):  # noqa: F811
    login(client, "auditor")
    client.get("/lang/cy")
    try:
        page = client.get(f"/reports/vat?from={books['today'].isoformat()}").data.decode()
        xlsx = client.get(f"/reports/vat?from={books['today'].isoformat()}&format=xlsx").data
    finally:
        client.get("/lang/en")
    assert "Adroddiad TAW" in page
    assert load_workbook(io.BytesIO(xlsx)).sheetnames == ["Adroddiad TAW"]


@pytest.mark.skipif(__import__("os").environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
                    reason="schemathesis runs on SQLite only (issue #15)")
def test_schemathesis_on_the_reports_as_an_auditor(app, client):
    """The whole-document run uses users who may not read reports: generated requests to the
    report endpoints as an Auditor never fail with a 5xx and conform to the document."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    from tests.conftest import api_token

    headers = {"Authorization": f"Bearer {api_token(client, 'auditor')}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    schema = schemathesis.openapi.from_wsgi("/api/v1/_openapi", app, headers=headers)
    operations = [r.ok() for r in schema.get_all_operations()
                  if r.ok().path.startswith("/api/v1/reports/")]
    assert len(operations) == 6
    failures = []
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), print_blob=False)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                case.call_and_validate(headers=headers, checks=checks)

            try:
                run()
            except Unsatisfiable:
                continue
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
