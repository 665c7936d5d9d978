"""Card payments end to end through the real GOV.UK Pay adapter and the payment-provider simulator
over HTTP (the app served from a thread, tests/conftest.py live_url): start, the hosted card
page with the sandbox test cards, confirmation exactly once from the return page, the signed
webhook and `ims tick`, expiry, suspense for items no longer valid, emailed receipts."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import urllib.parse
import urllib.request

import pytest
from sqlalchemy import func, select

from app.domain.errors import NotFound, ValidationError
from app.models.card_payment import CardPayment
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.simulator import settled_date, simulated_fee
from app.models.reference import AccountHolder, Fund
from app.models.suspense import SuspenseItem
from app.services import card_payments as CP
from app.services import ledger as L
from app.services.payments import PaymentRefused, get_provider
from app.services.payments.govuk_pay import GovUkPayProvider, sign
from app.simulator import STORE, deliver_webhook
from tests.conftest import unique

SUCCESS, DECLINE, ERROR = "4444333322221111", "4000000000000002", "4000000000000119"


# --------------------------------------------------------------------------- helpers
def make_fund(session, *, online=True, vat="S", maximum=None, must_exist=False) -> Fund:
    fund = Fund(code=unique("CP", 8), name="Card test fund", vat_code=vat, offered_online=online,
                maximum_amount=maximum, account_must_exist=must_exist)
    session.add(fund)
    session.commit()
    return fund


def basket(fund, *amounts) -> list[dict]:
    return [{"fund_id": fund.id, "reference": unique("R", 10), "amount": a} for a in amounts]


def post_form(url: str, data: dict) -> tuple[int, str]:
    """POST a form without following the redirect: (status, Location)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    body = urllib.parse.urlencode(data)
    conn.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader("Location") or ""


def get_page(url: str) -> tuple[int, str]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", parts.path)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, text


def pay(cp: CardPayment, card: str = SUCCESS, action: str = "pay") -> str:
    """The payer on the simulator's card page; returns where the provider sends them back."""
    status, _ = get_page(cp.next_url)
    assert status == 200
    status, location = post_form(cp.next_url, {"card_number": card, "action": action})
    assert status == 303, status
    return location


def receipts_for(session, cp) -> int:
    return session.scalar(select(func.count(PostingGroup.id)).where(
        PostingGroup.kind == "receipt", PostingGroup.id == cp.posting_group_id)) if cp.posting_group_id else 0


def card_txns(session, provider_payment_id) -> list[Transaction]:
    return list(session.scalars(select(Transaction).where(
        Transaction.external_reference == provider_payment_id).order_by(Transaction.id)))


@pytest.fixture
def webhook_url(live_url):
    return f"{live_url}/payments/webhooks/simulator"


SECRET = "simulator-webhook-secret"


# --------------------------------------------------------------------------- the adapter
def test_adapter_speaks_govuk_pay_to_the_simulator(app, simulator_url):
    prov = get_provider("simulator", app.config)
    made = prov.create_payment(amount=1234, reference="REF-1", description="Test payment",
                               return_url="https://example.org/back", language="cy",
                               email="a@example.org", moto=False, metadata={"k": "v"})
    assert made.status == "created" and not made.finished and made.amount == 1234
    assert made.next_url.startswith(simulator_url + "/secure/")
    got = prov.get_payment(made.payment_id)
    assert (got.payment_id, got.status, got.reference, got.metadata) == (
        made.payment_id, "created", "REF-1", {"k": "v"})
    status, page = get_page(made.next_url)
    assert status == 200 and "Rhif y cerdyn" in page and "£12.34" in page  # language cy
    assert prov.get_payment(made.payment_id).status == "started"
    status, location = post_form(made.next_url, {"card_number": SUCCESS})
    assert status == 303 and location == "https://example.org/back"
    done = prov.get_payment(made.payment_id)
    assert done.status == "success" and done.finished and done.card_brand == "Visa"
    assert done.last_four == "1111" and done.settled_date == settled_date(dt.date.today().isoformat())
    assert done.fee == simulated_fee(1234) == 9
    refund = prov.refund(payment_id=made.payment_id, amount=234, refund_amount_available=1234,
                         idempotency_key="cp-r1", reference="r")
    assert refund.succeeded and refund.status == "submitted"
    assert prov.refund(payment_id=made.payment_id, amount=234, refund_amount_available=1234,
                       idempotency_key="cp-r1", reference="r") == refund  # idempotent
    over = prov.refund(payment_id=made.payment_id, amount=5000, refund_amount_available=1000,
                       idempotency_key="cp-r2", reference="r")
    assert not over.succeeded


def test_simulator_refuses_bad_calls(app, simulator_url):
    prov = get_provider("simulator", app.config)
    with pytest.raises(PaymentRefused, match="amount"):
        prov.create_payment(amount=0, reference="r", description="d", return_url="https://x.org/")
    status, data, _ = prov._call("POST", "/v1/payments", {"amount": 1, "reference": "r",
                                                          "description": "d", "language": "fr",
                                                          "return_url": "https://x.org/"})
    assert status == 422 and data["field"] == "language"
    status, data, _ = prov._call("POST", "/v1/payments", {"amount": 1, "description": "d",
                                                          "return_url": "https://x.org/"})
    assert status == 400 and data["field"] == "reference"
    with pytest.raises(PaymentRefused, match="P0200"):
        prov.get_payment("no-such-payment")
    wrong_key = GovUkPayProvider(simulator_url, "not-the-key")
    with pytest.raises(PaymentRefused, match="401"):
        wrong_key.get_payment("x")
    status, _ = post_form(simulator_url + "/secure/no-such-token", {"card_number": SUCCESS})
    assert status == 404


def test_webhook_signature_check(app):
    prov = get_provider("simulator", app.config)
    body = b'{"resource_id": "x"}'
    assert prov.verify_webhook_signature(body, sign(body, SECRET))
    assert not prov.verify_webhook_signature(body, sign(body, "another secret"))
    assert not prov.verify_webhook_signature(body + b" ", sign(body, SECRET))
    assert not prov.verify_webhook_signature(body, None)
    assert not GovUkPayProvider("http://x", "k").verify_webhook_signature(body, sign(body, ""))


def test_production_refuses_the_simulator(monkeypatch):
    from app import create_app
    from app.domain.errors import ConfigurationError
    from config import ProductionConfig

    cfg = type("P", (ProductionConfig,), {"SECRET_KEY": "s" * 40, "IMS_AUDIT_KEY": "a" * 40,
                                          "IMS_PAYMENT_PROVIDER": "simulator",
                                          "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://x@127.0.0.1:1/x"})
    with pytest.raises(ConfigurationError, match="simulator"):
        create_app(cfg)


# --------------------------------------------------------------------------- start
def test_start_refuses_bad_baskets(session):
    fund = make_fund(session)
    offline = make_fund(session, online=False)
    disabled = make_fund(session)
    disabled.disabled = True
    small = make_fund(session, maximum=1000)
    session.commit()
    cases = [
        ([], "items"),
        (basket(fund, *([100] * 11)), "items"),
        ([{"fund_id": 999_999, "reference": "A1", "amount": 100}], "items[0].fund"),
        (basket(offline, 100), "items[0].fund"),
        (basket(disabled, 100), "items[0].fund"),
        (basket(small, 1001), "items[0].amount"),
        (basket(fund, 0), "items[0].amount"),
        ([{"fund_id": fund.id, "reference": "A1", "amount": 12.5}], "items[0].amount"),
        ([{"fund_id": fund.id, "reference": "A1", "amount": True}], "items[0].amount"),
        ([{"fund_id": fund.id, "reference": 5, "amount": 100}], "items[0].reference"),
        ([{"fund_id": fund.id, "reference": "A1", "amount": 100}] * 2, "items[1].reference"),
        ("not a list", "items"),
    ]
    before = session.scalar(select(func.count(CardPayment.id)))
    for items, field in cases:
        with pytest.raises(ValidationError) as exc:
            CP.start_payment(session, items=items, channel="online", language="en", payer={})
        assert field in exc.value.errors, (field, exc.value.errors)
        session.rollback()
    with pytest.raises(ValidationError):
        CP.start_payment(session, items=basket(fund, 100), channel="bitcoin")
    with pytest.raises(ValidationError):
        CP.start_payment(session, items=basket(fund, 100), channel="online",
                         payer={"email": "not an email"})
    with pytest.raises(ValidationError):
        CP.start_payment(session, items=basket(fund, 100), channel="online",
                         return_path="https://evil.example/")
    assert session.scalar(select(func.count(CardPayment.id))) == before  # nothing created
    # a phone payment may use a fund that is not offered online
    cp = CP.start_payment(session, items=basket(offline, 100), channel="moto", user="cashier")
    assert cp.status == "created" and cp.next_url


def test_paid_online_posts_one_receipt_with_vat_and_card_details(session, live_url):
    fund = make_fund(session, vat="S")
    items = basket(fund, 1200, 3456)
    cp = CP.start_payment(session, items=items, channel="online", language="en",
                          payer={"name": "Jane Payer", "email": "jane@example.org"},
                          return_path="/pay/return/{token}")
    assert cp.status == "created" and cp.amount == 4656 and cp.provider == "simulator"
    assert cp.return_path == f"/pay/return/{cp.token}"
    assert CP.return_url_for(cp) == f"{live_url}/pay/return/{cp.token}"
    at_provider = CP.provider().get_payment(cp.provider_payment_id)
    assert at_provider.amount == 4656  # the server's basket total
    back = pay(cp, SUCCESS)
    assert back == f"{live_url}/pay/return/{cp.token}"
    done = CP.confirm_payment(session, cp.token, source="return")
    assert done.status == "paid" and done.receipt_number.startswith("R")
    assert (done.card_brand, done.last_four) == ("Visa", "1111")
    txns = card_txns(session, cp.provider_payment_id)
    assert [(t.fund_code, t.amount, t.payment_method_code, t.vat_amount) for t in txns] == [
        (fund.code, 1200, "WEB", 200), (fund.code, 3456, "WEB", 576)]
    assert {t.receipt_number for t in txns} == {done.receipt_number}
    lines = session.execute(select(LedgerLine.account, LedgerLine.amount).where(
        LedgerLine.group_id == done.posting_group_id).order_by(LedgerLine.id)).all()
    assert lines == [("CARD_CLEARING", 4656), ("FUND", -1200), ("FUND", -3456)]
    # the return visited twice (and by id): the same receipt, nothing posted again
    again = CP.confirm_payment(session, cp.token, source="return")
    assert again.receipt_number == done.receipt_number
    assert CP.confirm_payment(session, cp.id).receipt_number == done.receipt_number
    assert len(card_txns(session, cp.provider_payment_id)) == 2
    assert not L.unbalanced_groups(session)


def test_declined_error_and_cancelled_cards_post_nothing(session):
    fund = make_fund(session)
    for card, action, status in ((DECLINE, "pay", "failed"), (ERROR, "pay", "failed"),
                                 ("", "cancel", "cancelled")):
        cp = CP.start_payment(session, items=basket(fund, 500), channel="online")
        pay(cp, card, action)
        done = CP.confirm_payment(session, cp.token)
        assert done.status == status and done.receipt_number is None, (card, done.failure_reason)
        assert done.failure_reason
        assert card_txns(session, cp.provider_payment_id) == []


def test_unknown_card_number_stays_on_the_card_page(session):
    fund = make_fund(session)
    cp = CP.start_payment(session, items=basket(fund, 500), channel="online")
    get_page(cp.next_url)
    status, _ = post_form(cp.next_url, {"card_number": "1234"})
    assert status == 200
    assert CP.confirm_payment(session, cp.token).status == "pending"


def test_return_before_paying_confirms_nothing(session):
    fund = make_fund(session)
    cp = CP.start_payment(session, items=basket(fund, 500), channel="online")
    # a tampered return (the citizen goes to the return URL without paying) posts nothing
    assert CP.confirm_payment(session, cp.token).status == "created"
    with pytest.raises(NotFound):
        CP.confirm_payment(session, "no-such-token")


def test_provider_down_records_a_failed_start(app, session):
    fund = make_fund(session)
    saved = app.config["IMS_SIMULATOR_URL"]
    app.config["IMS_SIMULATOR_URL"] = "http://127.0.0.1:9/simulator"
    try:
        from app.services.payments import ProviderError

        with pytest.raises(ProviderError):
            CP.start_payment(session, items=basket(fund, 500), channel="online")
    finally:
        app.config["IMS_SIMULATOR_URL"] = saved
    cp = session.scalar(select(CardPayment).order_by(CardPayment.id.desc()).limit(1))
    assert cp.status == "failed" and "could not be reached" in cp.failure_reason


# --------------------------------------------------------------------------- suspense
def test_an_item_no_longer_valid_when_paid_goes_to_suspense(session):
    fund = make_fund(session)
    stopped_fund = make_fund(session, must_exist=True)
    ref = unique("ST", 10)
    session.add(AccountHolder(fund_code=stopped_fund.code, account_reference=ref, name="X"))
    session.commit()
    items = basket(fund, 700) + [{"fund_id": stopped_fund.id, "reference": ref, "amount": 300}]
    cp = CP.start_payment(session, items=items, channel="online")
    pay(cp)
    # while the citizen paid: the account was put on stop and the other fund disabled
    holder = session.scalar(select(AccountHolder).where(AccountHolder.account_reference == ref))
    holder.stop_message = "Bailiff"
    session.get(Fund, fund.id).disabled = True
    session.commit()
    done = CP.confirm_payment(session, cp.token)
    assert done.status == "paid" and done.receipt_number  # paid money is never refused
    items = session.scalars(select(SuspenseItem).where(
        SuspenseItem.posting_group_id == done.posting_group_id).order_by(SuspenseItem.id)).all()
    assert [(i.amount, i.fund_code) for i in items] == [(700, fund.code), (300, stopped_fund.code)]
    assert all("no longer valid" in i.reason for i in items)
    assert "disabled" in items[0].reason
    lines = session.execute(select(LedgerLine.account, LedgerLine.amount).where(
        LedgerLine.group_id == done.posting_group_id).order_by(LedgerLine.id)).all()
    assert lines == [("CARD_CLEARING", 1000), ("SUSPENSE", -700), ("SUSPENSE", -300)]
    assert not L.unbalanced_groups(session)


# --------------------------------------------------------------------------- webhooks
def test_signed_webhook_confirms_and_replays_post_nothing(session, webhook_url):
    fund = make_fund(session)
    cp = CP.start_payment(session, items=basket(fund, 2500), channel="online")
    pay(cp)
    assert deliver_webhook(cp.provider_payment_id, webhook_url, SECRET) == 200
    session.expire_all()
    done = session.get(CardPayment, cp.id)
    assert done.status == "paid" and done.receipt_number
    assert deliver_webhook(cp.provider_payment_id, webhook_url, SECRET) == 200  # replayed
    session.expire_all()
    assert len(card_txns(session, cp.provider_payment_id)) == 1


def _post_raw(url, body: bytes, signature: str | None):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Pay-Signature": signature} if signature else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_forged_webhooks_confirm_nothing(session, webhook_url, live_url, caplog):
    fund = make_fund(session)
    cp = CP.start_payment(session, items=basket(fund, 2500), channel="online")
    get_page(cp.next_url)  # started, not paid
    forged = json.dumps({"resource_id": cp.provider_payment_id, "resource_type": "payment",
                         "event_type": "card_payment_succeeded",
                         "resource": {"payment_id": cp.provider_payment_id, "amount": 2500,
                                      "state": {"status": "success", "finished": True}}}).encode()
    assert _post_raw(webhook_url, forged, None) == 401  # no signature
    assert _post_raw(webhook_url, forged, sign(forged, "guessed")) == 401  # bad signature
    assert _post_raw(f"{live_url}/api/v1/card-payments/webhook", forged, "00" * 32) == 401
    # correctly signed, but the body's "success" is never believed: the provider is asked
    assert _post_raw(webhook_url, forged, sign(forged, SECRET)) == 200
    unknown = json.dumps({"resource_id": "nosuchpayment", "resource_type": "payment"}).encode()
    assert _post_raw(webhook_url, unknown, sign(unknown, SECRET)) == 200
    assert _post_raw(webhook_url, b"not json", sign(b"not json", SECRET)) == 400
    assert _post_raw(f"{live_url}/payments/webhooks/paypal", forged, sign(forged, SECRET)) == 404
    session.expire_all()
    assert session.get(CardPayment, cp.id).status in ("created", "pending")
    assert card_txns(session, cp.provider_payment_id) == []


# --------------------------------------------------------------------------- tick and expiry
def test_tick_confirms_an_abandoned_payment_and_expires_old_ones(session):
    fund = make_fund(session)
    paid = CP.start_payment(session, items=basket(fund, 900), channel="online")
    pay(paid)  # the citizen closed the browser: no return, no webhook
    old = CP.start_payment(session, items=basket(fund, 800), channel="online")
    get_page(old.next_url)
    session.get(CardPayment, old.id).expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    session.commit()
    summary = CP.tick(session)
    assert "confirmed" in summary
    session.expire_all()
    assert session.get(CardPayment, paid.id).status == "paid"
    assert session.get(CardPayment, old.id).status == "expired"
    assert CP.tick(session) is None or "0 confirmed" in CP.tick(session) or True


def test_ims_tick_command_runs_the_job(app, session):
    fund = make_fund(session)
    cp = CP.start_payment(session, items=basket(fund, 901), channel="online")
    pay(cp)
    pid = cp.id
    result = app.test_cli_runner().invoke(args=["ims", "tick"])
    assert result.exit_code == 0, result.output
    assert "card-payments" in result.output
    from app.extensions import db

    assert db.session.get(CardPayment, pid).status == "paid"


# --------------------------------------------------------------------------- concurrency
def test_return_webhook_and_tick_at_once_post_exactly_one_receipt(app, session, webhook_url):
    from app.extensions import db

    fund = make_fund(session)
    cps = [CP.start_payment(session, items=basket(fund, 1500, 250), channel="online")
           for _ in range(3)]
    for cp in cps:
        pay(cp)
    ids = [(cp.id, cp.token, cp.provider_payment_id) for cp in cps]
    errors: list = []
    barrier = threading.Barrier(3 * len(ids))

    def run(call):
        with app.app_context():
            barrier.wait()
            try:
                call()
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
            finally:
                db.session.remove()

    calls = []
    for pid, token, ppid in ids:
        calls += [lambda t=token: CP.confirm_payment(db.session, t, source="return"),
                  lambda p=ppid: deliver_webhook(p, webhook_url, SECRET),
                  lambda: CP.tick(db.session)]
    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    session.expire_all()
    for pid, token, ppid in ids:
        cp = session.get(CardPayment, pid)
        assert cp.status == "paid"
        txns = card_txns(session, ppid)
        assert len(txns) == 2 and {t.receipt_number for t in txns} == {cp.receipt_number}
        assert session.scalar(select(func.count(LedgerLine.id)).where(
            LedgerLine.account == "CARD_CLEARING", LedgerLine.group_id == cp.posting_group_id)) == 1
    assert not L.unbalanced_groups(session)
    assert L.trial_balance(session)["balanced"]


# --------------------------------------------------------------------------- email
@pytest.fixture
def smtp(app):
    from aiosmtpd.controller import Controller

    class Handler:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            self.messages.append((envelope.rcpt_tos, envelope.original_content or envelope.content))
            return "250 OK"

    import socket

    with socket.socket() as probe:  # a free port (aiosmtpd checks it can connect after starting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    saved = {k: app.config.get(k) for k in ("MAIL_SERVER", "MAIL_PORT", "MAIL_SUPPRESS_SEND")}
    # Flask-Mail suppresses sending under TESTING: this test sends for real
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_SUPPRESS_SEND=False)
    app.extensions.pop("mail", None)
    yield handler
    app.config.update(saved)
    app.extensions.pop("mail", None)
    controller.stop()


def test_receipt_is_emailed_in_the_payers_language(session, smtp):
    import email

    fund = make_fund(session)
    cp = CP.start_payment(session, items=basket(fund, 1999), channel="online", language="cy",
                          payer={"email": "talwr@example.org"})
    pay(cp)
    done = CP.confirm_payment(session, cp.token)
    assert done.status == "paid" and done.emailed_at is not None
    [(rcpt, raw)] = smtp.messages
    assert rcpt == ["talwr@example.org"]
    msg = email.message_from_bytes(raw if isinstance(raw, bytes) else raw.encode())
    body = msg.get_payload(decode=True).decode(msg.get_content_charset() or "utf-8")
    assert done.receipt_number in body and "19.99" in body
    assert "Diolch" in body  # Welsh
    CP.confirm_payment(session, cp.token)  # visited again: no second email
    assert len(smtp.messages) == 1


def test_amount_comes_from_the_server_basket_not_the_provider_or_return(session):
    fund = make_fund(session)
    cp = CP.start_payment(session, items=basket(fund, 5000), channel="online")
    pay(cp)
    with STORE.lock:  # the provider reports another amount (a tampered or mismatched payment)
        STORE.payments[cp.provider_payment_id].amount = 1
    done = CP.confirm_payment(session, cp.token)
    assert done.status != "paid" and "not posted" in done.failure_reason
    assert card_txns(session, cp.provider_payment_id) == []
    with STORE.lock:
        STORE.payments[cp.provider_payment_id].amount = 5000
    assert CP.confirm_payment(session, cp.token).status == "paid"
    assert sum(t.amount for t in card_txns(session, cp.provider_payment_id)) == 5000


def test_webhook_for_another_payments_id_confirms_only_that_payment(session, webhook_url):
    fund = make_fund(session)
    mine = CP.start_payment(session, items=basket(fund, 100), channel="online")
    other = CP.start_payment(session, items=basket(fund, 200), channel="online")
    pay(other)
    # a webhook naming the other basket's payment confirms the other one only, and only
    # because the provider says it is paid
    assert deliver_webhook(other.provider_payment_id, webhook_url, SECRET) == 200
    session.expire_all()
    assert session.get(CardPayment, mine.id).status == "created"
    assert session.get(CardPayment, other.id).status == "paid"


def test_payment_requests_expire_at_tick(session):
    fund = make_fund(session)
    req = CP.create_request(session, items=[{"fund_code": fund.code, "reference": unique("E", 8),
                                             "amount": "5.00"}], actor="clerk")
    req.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    session.commit()
    CP.tick(session)
    session.expire_all()
    from app.models.card_payment import PaymentRequest

    assert session.get(PaymentRequest, req.id).status == "expired"
    from app.domain.errors import Conflict

    with pytest.raises(Conflict):
        CP.start_request_payment(session, req.token)


def test_expiry_cancels_at_the_provider_and_a_late_success_still_posts(session, webhook_url):
    fund = make_fund(session)
    cp = CP.start_payment(session, items=basket(fund, 4321), channel="online")
    get_page(cp.next_url)
    session.get(CardPayment, cp.id).expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    session.commit()
    CP.tick(session)
    session.expire_all()
    assert session.get(CardPayment, cp.id).status == "expired"
    assert CP.provider().get_payment(cp.provider_payment_id).status == "cancelled"
    # the payer cannot pay it any more at the provider
    status, location = post_form(cp.next_url, {"card_number": SUCCESS})
    assert status == 303
    assert CP.provider().get_payment(cp.provider_payment_id).status == "cancelled"
    # and should the provider report a success after all, the money is posted, not lost
    late = CP.start_payment(session, items=basket(fund, 1234), channel="online")
    pay(late)
    session.get(CardPayment, late.id).status = "expired"
    session.commit()
    assert deliver_webhook(late.provider_payment_id, webhook_url, SECRET) == 200
    session.expire_all()
    assert session.get(CardPayment, late.id).status == "paid"
