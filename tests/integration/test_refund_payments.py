"""Payment providers: the GOV.UK Pay adapter against a local fake HTTP server (real HTTP on
127.0.0.1), and a card refund paid end to end through it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.models.refund import Refund
from app.services import refunds as RF
from app.services import workflow as wf
from app.services.payments import ProviderError, get_provider
from app.services.payments.govuk_pay import GovUkPayProvider
from tests.integration.test_refunds import deploy_refund_workflow, make_txn, ready


class FakeGovUkPay(BaseHTTPRequestHandler):
    """Just enough of GOV.UK Pay's refund endpoint: idempotent by Idempotency-Key."""

    requests: list[dict] = []
    answers: dict[str, tuple[int, dict]] = {}
    refunded: dict[str, int] = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        record = {"path": self.path, "auth": self.headers.get("Authorization"),
                  "key": self.headers.get("Idempotency-Key"), "body": body}
        type(self).requests.append(record)
        parts = self.path.strip("/").split("/")
        if parts[:2] != ["v1", "payments"] or parts[3:] != ["refunds"]:
            return self._send(404, {"code": "P0200", "description": "Not found"})
        if self.headers.get("Authorization") != "Bearer test-key":
            return self._send(401, {"description": "Unauthorised"})
        payment_id = parts[2]
        key = record["key"]
        if key in self.answers:
            return self._send(*self.answers[key])
        if payment_id.startswith("boom"):
            return self._send(500, {"description": "Internal error"})
        if payment_id.startswith("expired"):
            answer = (400, {"code": "P0604", "description": "Refund not available"})
        elif body.get("amount", 0) > body.get("refund_amount_available", 0):
            answer = (412, {"code": "P0604", "description": "refund_amount_available mismatch"})
        else:
            self.refunded[payment_id] = self.refunded.get(payment_id, 0) + body["amount"]
            answer = (202, {"refund_id": f"rf{len(self.answers) + 1}", "amount": body["amount"],
                            "status": "submitted", "created_date": "2026-11-25T12:00:00Z"})
        self.answers[key] = answer
        return self._send(*answer)

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def fake_pay():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGovUkPay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_govuk_pay_refund_call_shape_and_idempotency(fake_pay):
    provider = GovUkPayProvider(fake_pay, "test-key")
    first = provider.refund(payment_id="pay123", amount=1_250, refund_amount_available=5_000,
                            idempotency_key="k-1", reference="IMS refund 1")
    assert first.succeeded and first.status == "submitted" and first.provider_refund_id
    req = FakeGovUkPay.requests[-1]
    assert req["path"] == "/v1/payments/pay123/refunds" and req["auth"] == "Bearer test-key"
    assert req["key"] == "k-1"
    assert req["body"] == {"amount": 1_250, "refund_amount_available": 5_000}
    again = provider.refund(payment_id="pay123", amount=1_250, refund_amount_available=5_000,
                            idempotency_key="k-1", reference="IMS refund 1")
    assert again == first and FakeGovUkPay.refunded["pay123"] == 1_250  # refunded once


def test_govuk_pay_refusals_and_unknown_outcomes(fake_pay):
    provider = GovUkPayProvider(fake_pay, "test-key")
    refused = provider.refund(payment_id="expired1", amount=100, refund_amount_available=100,
                              idempotency_key="k-2", reference="r")
    assert not refused.succeeded and "400" in refused.message and "Refund not available" in refused.message
    mismatch = provider.refund(payment_id="pay9", amount=200, refund_amount_available=100,
                               idempotency_key="k-3", reference="r")
    assert not mismatch.succeeded and "412" in mismatch.message
    with pytest.raises(ProviderError):
        provider.refund(payment_id="boom", amount=1, refund_amount_available=1,
                        idempotency_key="k-4", reference="r")
    with pytest.raises(ProviderError):
        GovUkPayProvider(fake_pay, "").refund(payment_id="x", amount=1, refund_amount_available=1,
                                              idempotency_key="k-5", reference="r")
    with pytest.raises(ProviderError):  # nothing listens there
        GovUkPayProvider("http://127.0.0.1:9", "test-key").refund(
            payment_id="x", amount=1, refund_amount_available=1, idempotency_key="k-6",
            reference="r")
    with pytest.raises(ValueError):
        get_provider("bitcoin")


def test_card_refund_paid_through_govuk_pay_end_to_end(app, session, fake_pay):
    deploy_refund_workflow(session)
    saved = {k: app.config.get(k) for k in ("IMS_PAYMENT_PROVIDER", "GOVUK_PAY_URL", "GOVUK_PAY_API_KEY")}
    app.config.update(IMS_PAYMENT_PROVIDER="govuk_pay", GOVUK_PAY_URL=fake_pay,
                      GOVUK_PAY_API_KEY="test-key")
    try:
        txn = make_txn(session, 6_000, external_reference="payE2E")
        refund = RF.request_refund(session, transaction_id=txn.id, amount="20.00", reason="dup",
                                   method="card", actor="clerk").refund
        [task] = ready(session, refund)
        wf.complete_task(session, task.id, "manager", "approve", None)
        RF.pay_queued(session)
        session.expire_all()
        refund = session.get(Refund, refund.id)
        assert refund.status == "paid" and refund.provider == "govuk_pay"
        req = FakeGovUkPay.requests[-1]
        assert req["path"] == "/v1/payments/payE2E/refunds"
        assert req["body"] == {"amount": 2_000, "refund_amount_available": 6_000}
        assert req["key"] == f"ims-refund-{refund.id}-1"
        # a second refund tells GOV.UK Pay what is left on the payment
        second = RF.request_refund(session, transaction_id=txn.id, amount="10.00", reason="more",
                                   method="card", actor="clerk").refund
        [task] = ready(session, second)
        wf.complete_task(session, task.id, "manager", "approve", None)
        RF.pay_queued(session)
        assert FakeGovUkPay.requests[-1]["body"] == {"amount": 1_000, "refund_amount_available": 4_000}
        # a refusal fails the refund and reverses its posting
        bad = make_txn(session, 3_000, external_reference="expired-card")
        failed = RF.request_refund(session, transaction_id=bad.id, amount="30.00", reason="x",
                                   method="card", actor="clerk").refund
        [task] = ready(session, failed)
        wf.complete_task(session, task.id, "manager", "approve", None)
        RF.pay_queued(session)
        session.expire_all()
        failed = session.get(Refund, failed.id)
        assert failed.status == "failed" and "Refund not available" in failed.failure_reason
    finally:
        app.config.update(saved)
