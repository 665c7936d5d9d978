"""axe-core over every page each role can reach, in English and Welsh: no violation of any
impact (issue 21 item 11). The pages are found as a user finds them: the landing page, every menu
entry, the top bar's links, and one page of each kind linked from those (a record, a task, a
receipt's print view...). Screenshots of each role's landing page go to test-results/.

Kept quick (it visits some 400 pages): each role signs in once, in a browser context kept for
both languages; the browser caches the static files for the run (so a page's visit is the page's
own request, not twenty revalidations of CSS and scripts); and a page is checked once no request
of it has been in flight for 150 ms, where Playwright's "networkidle" waits 500 ms on every page.
"""

from __future__ import annotations

import os
import re
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import browser_login, once_on_sqlite, screenshot

pytestmark = [pytest.mark.browser, once_on_sqlite]

AXE = os.path.join(os.path.dirname(__file__), "vendor", "axe.min.js")
USERS = ("admin", "wfadmin", "head", "manager", "clerk", "cashier", "auditor")
#: never followed: signing out, switching language, files, and pages that change things by GET
SKIP = re.compile(r"(/logout|/lang/|^/back$|\.csv|\.txt|\.xml|\.bpmn|/download|/samples/|/export|"
                  r"/api/|/swagger|/static/|/verify|/action|/delete|/print$|bacs|/cheques)")
MAX_PAGES = 45
#: page kinds axe already checked, per language: a later role still visits them (to find its
#: links) but axe runs on a kind once per language — the page body is the same for every role
#: that may open it; each role's landing page and menus are checked for each role.
_CHECKED: dict[str, set[str]] = {}
#: user -> the pages axe checked for them in English: their Welsh test checks the same pages
#: (no second crawl: the links are the same in both languages)
_CHECKED_EN: dict[str, list[str]] = {}


def _kind(path: str) -> str:
    """Pages of one kind are checked once: ids become N, queries are dropped."""
    return re.sub(r"/[0-9a-f]{8}-[0-9a-f-]{27,}|/R?\d+", "/N", path.split("?")[0])


def _links(page, base: str) -> list[str]:
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]'))"
                          ".map(a => a.getAttribute('href'))")
    out = []
    for href in hrefs:
        if not href or href.startswith(("#", "javascript:", "mailto:")):
            continue
        parts = urlsplit(href)
        if parts.netloc and parts.netloc != urlsplit(base).netloc:
            continue
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if path.startswith("/") and not SKIP.search(path):
            out.append(path)
    return out


_AXE_SOURCE: list[str] = []


def _violations(page) -> list[str]:
    if not _AXE_SOURCE:
        with open(AXE, encoding="utf-8") as fh:
            _AXE_SOURCE.append(fh.read() + "\n;0")
    page.evaluate(_AXE_SOURCE[0])
    return page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}});
        return r.violations.map(v => v.impact + ' ' + v.id + ': ' + v.help + ' @ ' +
            v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")


def _receipt_print(session) -> str | None:
    from sqlalchemy import select

    from app.models.ledger import Transaction

    number = session.scalar(select(Transaction.receipt_number).where(
        Transaction.receipt_number.is_not(None)).order_by(Transaction.id.desc()).limit(1))
    return f"/receipts/{number}/print" if number else None


class _Settle:
    """Requests of a page in flight, to wait until none has been for a moment (as "networkidle"
    does, with a shorter quiet time): pages that fetch content after load are checked as shown."""

    QUIET = 0.15  # seconds with nothing in flight
    TIMEOUT = 15.0

    def __init__(self, page):
        self.page, self.in_flight = page, set()
        page.on("request", lambda r: self.in_flight.add(r))
        page.on("requestfinished", lambda r: self.in_flight.discard(r))
        page.on("requestfailed", lambda r: self.in_flight.discard(r))

    def __call__(self) -> None:
        start = quiet_since = time.monotonic()
        while True:
            self.page.wait_for_timeout(25)  # lets Playwright deliver the request events
            now = time.monotonic()
            if self.in_flight:
                quiet_since = now
            elif now - quiet_since >= self.QUIET:
                return
            if now - start > self.TIMEOUT:
                raise AssertionError(f"requests still in flight: {[r.url for r in self.in_flight]}")


@pytest.fixture(scope="module")
def role_page(browser, live_url, app):
    """role_page(user): a page signed in as ``user``, in a browser context kept while the tests
    are of that role (both languages: the tests run role by role), with the static files cached
    by the browser meanwhile."""
    saved = app.config.get("SEND_FILE_MAX_AGE_DEFAULT")
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 3600
    current: dict = {}

    def get(user: str):
        if current.get("user") != user:
            if current:
                current["page"].context.close()
            context = browser.new_context(locale="en-GB", viewport={"width": 1366, "height": 900})
            pg = context.new_page()
            pg.set_default_timeout(15000)
            browser_login(pg, live_url, user)
            current.update(user=user, page=pg, settle=_Settle(pg))
        return current["page"], current["settle"]

    yield get
    if current:
        current["page"].context.close()
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = saved


@pytest.mark.parametrize("lang", ["en", "cy"])
@pytest.mark.parametrize("user", USERS)
def test_every_reachable_page_passes_axe(role_page, live_url, session, user, lang):
    """English: crawl from the landing page, axe on each kind of page not checked yet.
    Welsh: the same pages the English test checked for this role (a crawl when run alone)."""
    page, settle = role_page(user)
    page.goto(f"{live_url}/lang/{lang}")
    start = ["/", "/dashboard/", "/tasks/", "/notifications/", "/userinfo/"]
    extra = _receipt_print(session)
    if extra:
        start.append(extra)
    queue, seen, found = list(start), set(), {}
    crawl = lang == "en" or user not in _CHECKED_EN
    if not crawl:
        queue = list(_CHECKED_EN[user])
    checked_here = _CHECKED_EN.setdefault(user, []) if lang == "en" else []
    while queue and len(seen) < MAX_PAGES:
        path = queue.pop(0)
        kind = _kind(path)
        if kind in seen:
            continue
        seen.add(kind)
        resp = page.goto(live_url + path)
        if resp is None or resp.status >= 400 or "/login" in page.url:
            continue  # not this role's page (the menus may still link an error page: see below)
        settle()
        if path == "/":
            screenshot(page, f"axe-{lang}-{user}-landing")
        checked = _CHECKED.setdefault(lang, set())
        if path == "/" or kind not in checked:
            checked.add(kind)
            checked_here.append(path)
            problems = _violations(page)
            if problems:
                found[path] = problems
        if crawl:
            queue.extend(p for p in _links(page, live_url) if _kind(p) not in seen)
    page.goto(f"{live_url}/lang/en")
    assert len(seen) >= (5 if crawl else 1)
    assert not found, "\n".join(f"{p}: {v}" for p, vs in found.items() for v in vs)
