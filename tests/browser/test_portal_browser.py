"""The payment portal in a real browser: axe-core finds no violation (of any impact) on any
portal page, in English and in Welsh; a citizen pays two items in Welsh through the simulator's
hosted card page, sees the receipt number and gets the emailed receipt."""

from __future__ import annotations

import email
import os

import pytest
from sqlalchemy import select

from app.models.card_payment import CardPayment
from app.models.reference import AccountHolder
from tests.conftest import once_on_sqlite
from tests.integration.test_card_payments import smtp  # noqa: F401  (the real SMTP server)
from tests.portal.fixtures import online  # noqa: F401

pytestmark = pytest.mark.browser

AXE = os.path.join(os.path.dirname(__file__), "vendor", "axe.min.js")


def _violations(page):
    """Every axe violation (any impact) of the WCAG 2.0-2.2 A/AA rules and axe's best practices."""
    with open(AXE, encoding="utf-8") as fh:
        page.evaluate(fh.read() + "\n;0")  # not a <script>: the CSP refuses one without the nonce
    return page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa',
            'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}});
        return r.violations.map(v => v.impact + ' ' + v.id + ': ' + v.help + ' @ ' +
            v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")


@pytest.fixture
def csrf_on(app):
    app.config["WTF_CSRF_ENABLED"] = True
    yield
    app.config["WTF_CSRF_ENABLED"] = False


def _checked(page, seen, name):
    page.wait_for_load_state("networkidle")
    assert page.locator("html").get_attribute("lang") in ("en", "cy")
    found = _violations(page)
    assert found == [], (name, page.url, found)
    if os.environ.get("IMS_PORTAL_SCREENSHOTS"):  # a directory: one picture per page
        lang = page.locator("html").get_attribute("lang")
        page.screenshot(path=os.path.join(os.environ["IMS_PORTAL_SCREENSHOTS"],
                                          f"{lang}-{name.replace(' ', '-')}.png"), full_page=True)
    seen.append(name)


def _second_reference(session):
    return session.scalar(select(AccountHolder.account_reference).where(
        AccountHolder.fund_code == "CTAX", AccountHolder.stop_message.is_(None)).limit(1))


@once_on_sqlite
@pytest.mark.parametrize("language", ["en", "cy"])
def test_every_portal_page_is_accessible(page, live_url, session, online, language,  # noqa: F811
                                         csrf_on):
    seen: list[str] = []
    page.goto(f"{live_url}/pay/language/{language}?next=/pay/")
    assert page.locator("html").get_attribute("lang") == language
    _checked(page, seen, "start")
    page.goto(f"{live_url}/pay/basket")
    _checked(page, seen, "empty basket")
    page.goto(f"{live_url}/pay/what")
    _checked(page, seen, "what")
    page.click("button.govuk-button")  # nothing chosen
    _checked(page, seen, "what with an error")
    assert page.evaluate("document.activeElement.classList.contains('govuk-error-summary')")
    page.goto(f"{live_url}/pay/item/HRA")
    _checked(page, seen, "item")
    page.fill("#reference", online["missing"])
    page.fill("#amount", "abc")
    page.click("button.govuk-button")
    _checked(page, seen, "item with errors")
    page.fill("#reference", online["open"])
    page.fill("#amount", "12.50")
    page.click("button.govuk-button")
    page.wait_for_url("**/pay/basket")
    _checked(page, seen, "basket")
    page.goto(f"{live_url}/pay/details")
    page.fill("#email", "not an email")
    page.click("button.govuk-button")
    _checked(page, seen, "details with an error")
    page.fill("#email", "payer@example.com")
    page.click("button.govuk-button")
    page.wait_for_url("**/pay/check")
    _checked(page, seen, "check your answers")
    page.click("form button.govuk-button")
    page.wait_for_url("**/simulator/secure/**")
    page.click("#cancel")
    page.wait_for_url("**/pay/return/**")
    _checked(page, seen, "cancelled")
    page.goto(f"{live_url}/pay/check")
    page.click("form button.govuk-button")
    page.wait_for_url("**/simulator/secure/**")
    page.fill("#card_number", "4000000000000002")
    page.click("#pay")
    page.wait_for_url("**/pay/return/**")
    _checked(page, seen, "failed")
    page.goto(f"{live_url}/pay/check")
    page.click("form button.govuk-button")
    page.wait_for_url("**/simulator/secure/**")
    page.fill("#card_number", "4444333322221111")
    page.click("#pay")
    page.wait_for_url("**/pay/return/**")
    _checked(page, seen, "paid")
    for path, name in (("/pay/item/TWS", "not online"), ("/pay/return/" + "x" * 30, "no payment"),
                       ("/pay/request/" + "y" * 30, "no request")):
        page.goto(live_url + path)
        _checked(page, seen, name)
    from app.services import card_payments

    req = card_payments.create_request(session, items=[
        {"fund_code": "HRA", "reference": online["open"], "amount": "3.00"}], actor="clerk")
    session.commit()
    page.goto(f"{live_url}/pay/request/{req.token}")
    _checked(page, seen, "payment request")
    card_payments.cancel_request(session, req.token, actor="clerk")
    page.goto(f"{live_url}/pay/request/{req.token}")
    _checked(page, seen, "closed request")
    assert len(seen) == 17


def test_a_citizen_pays_two_items_in_welsh(page, live_url, session, online, smtp,  # noqa: F811
                                           csrf_on):
    second = _second_reference(session)
    page.goto(f"{live_url}/pay/language/cy?next=/pay/")
    page.click("text=Dechrau nawr")
    page.check("label:has-text('Rhent')")
    page.click("text=Parhau")
    page.fill("#reference", online["open"])
    page.fill("#amount", "12.50")
    page.click("text=Ychwanegu at y fasged")
    page.wait_for_url("**/pay/basket")
    page.click("text=Ychwanegu rhywbeth arall i dalu amdano")
    page.check("label:has-text('Treth Gyngor')")
    page.click("text=Parhau")
    page.fill("#reference", second)
    page.fill("#amount", "30.00")
    page.click("text=Ychwanegu at y fasged")
    page.wait_for_url("**/pay/basket")
    assert "£42.50" in page.inner_text("main")
    page.click("text=Parhau i dalu")
    page.fill("#email", "talwr@example.org")
    page.click("text=Parhau")
    page.wait_for_url("**/pay/check")
    page.click("text=Talu £42.50 â cherdyn")
    page.wait_for_url("**/simulator/secure/**")
    assert page.locator("html").get_attribute("lang") == "cy"  # the language went to the provider
    assert "£42.50" in page.inner_text("#amount")
    page.fill("#card_number", "4444 3333 2222 1111")
    page.click("#pay")
    page.wait_for_url("**/pay/return/**")
    assert "Taliad wedi’i gwblhau" in page.inner_text("h1")
    receipt = page.inner_text("#receipt-number").strip()
    session.expire_all()
    cp = session.scalar(select(CardPayment).where(CardPayment.receipt_number == receipt))
    assert cp is not None and cp.status == "paid" and cp.amount == 4250 and cp.language == "cy"
    assert [(i["fund_code"], i["amount"]) for i in cp.items] == [("HRA", 1250), ("CTAX", 3000)]
    [(rcpt, raw)] = smtp.messages
    assert rcpt == ["talwr@example.org"]
    msg = email.message_from_bytes(raw if isinstance(raw, bytes) else raw.encode())
    body = msg.get_payload(decode=True).decode(msg.get_content_charset() or "utf-8")
    assert receipt in body and "Diolch" in body
    # the same return again: the same receipt, no second email
    page.reload()
    assert page.inner_text("#receipt-number").strip() == receipt
    assert len(smtp.messages) == 1
