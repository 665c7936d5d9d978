"""The Auditor's audit trail reads as who, what, which record (linked), before → after in words,
with filters by date, user, record type and action (issue 21 item 8)."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from app.models.reference import Office
from tests.conftest import login, unique


def _office_changed(client, session):
    code = unique("A", 8)
    client.post("/officeview/add", data={"code": code, "name": "Before name"})
    office = session.scalar(select(Office).where(Office.code == code))
    client.post(f"/officeview/edit/{office.id}", data={"name": "After name"})
    return office


def test_trail_is_readable_and_links_the_record(client, session):
    login(client, "admin")
    office = _office_changed(client, session)
    login(client, "auditor")
    html = client.get(f"/audit/?entity=Office&entity_id={office.id}").get_data(as_text=True)
    assert "<h1>Audit trail</h1>" in html
    table = html[html.index('id="audit-trail"'):]
    assert f'href="/officeview/show/{office.id}">Office {office.id}</a>' in table
    assert "<del>Before name</del> → <ins>After name</ins>" in table
    assert "changed" in table and "created" in table and ">admin<" in table
    assert '{"' not in table and "&#34;" not in table
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d", table)  # "6 Dec 2026 07:23"
    assert "2 events" in html


def test_filters_by_user_action_and_date(client, session):
    login(client, "admin")
    office = _office_changed(client, session)
    login(client, "auditor")
    base = f"/audit/?entity=Office&entity_id={office.id}"
    html = client.get(base + "&action=update").get_data(as_text=True)
    assert "1 event" in html and "<del>Before name</del>" in html
    html = client.get(base + "&actor=nobody-at-all").get_data(as_text=True)
    assert "No events match." in html
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    html = client.get(base + f"&date_from={tomorrow}").get_data(as_text=True)
    assert "No events match." in html
    html = client.get(base + "&date_from=yesterday").get_data(as_text=True)
    assert "YYYY-MM-DD" in html  # a bad date is said, not a 500
    assert client.get("/audit/?page=-4").status_code in (200, 400)


def test_trail_in_welsh_and_only_for_readers(client, session):
    login(client, "auditor")
    client.get("/lang/cy")
    html = client.get("/audit/?entity=Office").get_data(as_text=True)
    assert "Trywydd archwilio" in html
    assert "Swyddfa" in html
    client.get("/lang/en")
    login(client, "cashier")
    assert client.get("/audit/").status_code == 403
