"""Citizen checkouts per second through the real app over HTTP, the IMS's own request handling
timed apart from the payment-provider simulator.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/portal.py
    .venv/bin/python bench/portal.py --checkouts 200          # SQLite (temp file)

Each checkout is a basket of two items (Council Tax with a check-digit reference, Trade Waste
with VAT), from add-to-basket to the posted receipt, as a browser does it (a fresh cookie
session, CSRF tokens read from the forms):

  IMS  GET  /pay/item/CTAX, POST /pay/item/CTAX, GET /pay/item/TWS, POST /pay/item/TWS,
       GET  /pay/check,     POST /pay/check (start_payment: the provider payment is created)
  SIM  GET  the card page,  POST the card form (4444333322221111) -> 303 to the return URL
  IMS  GET  /pay/return/<token> (confirm_payment: asks the provider, posts the receipt)

The app is served by werkzeug in threads of this process. Each IMS request's time is measured
inside the server (before_request to after_request) less the time it spent waiting for the
provider's HTTP answers (the simulator, served by the same process), so the IMS figures are the
IMS's own work; the provider calls and the simulator's own pages are reported apart. Rate limits
are off and the simulator's webhooks are off (the return page confirms). The database named by
DATABASE_URL is WIPED. Target: p95 under 100 ms for every IMS request.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import fresh_app, percentile  # noqa: E402

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_local = threading.local()


def _instrument(app, timings: dict):
    """Time each request in the server, less its outgoing provider calls."""
    from flask import g, request

    from app.services.payments import govuk_pay

    original = govuk_pay.GovUkPayProvider._call

    def timed_call(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent = time.perf_counter() - t
            _local.provider = getattr(_local, "provider", 0.0) + spent
            timings["provider call " + args[0]].append(spent)

    govuk_pay.GovUkPayProvider._call = timed_call

    @app.before_request
    def _start():
        _local.provider = 0.0
        g.bench_t0 = time.perf_counter()

    @app.after_request
    def _stop(response):
        t0 = getattr(g, "bench_t0", None)
        if t0 is not None:
            total = time.perf_counter() - t0
            rule = request.url_rule.rule if request.url_rule is not None else request.path
            key = ("SIM " if rule.startswith("/simulator") else "IMS ") + f"{request.method} {rule}"
            timings[key].append(total - getattr(_local, "provider", 0.0))
        return response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkouts", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("IMS_SIMULATOR_WEBHOOKS", "0")
    app = fresh_app(os.environ.get("DATABASE_URL"))
    app.config.update(IMS_SIMULATOR_WEBHOOKS=False, RATELIMIT_ENABLED=False,
                      PORTAL_CHECK_RATE_LIMIT="", PORTAL_CHECKOUT_RATE_LIMIT="",
                      IMS_ACCESS_LOG=False)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("ims.request").setLevel(logging.ERROR)
    import requests
    from sqlalchemy import func, select
    from werkzeug.serving import make_server

    with app.app_context():
        from app.extensions import db
        from app.models.reference import Fund
        from app.services.seed import make_reference

        session = db.session
        for code in ("CTAX", "TWS"):
            session.scalar(select(Fund).where(Fund.code == code)).offered_online = True
        session.commit()
        v = session.scalar(select(Fund).where(Fund.code == "CTAX")).validator
        rng = random.Random(1)
        refs = [make_reference(v, rng) for _ in range(500)]
        dialect = db.engine.dialect.name
        db.session.remove()

    timings: dict[str, list[float]] = collections.defaultdict(list)
    _instrument(app, timings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    app.config.update(IMS_SIMULATOR_URL=f"{base}/simulator", IMS_PUBLIC_BASE_URL=base,
                      IMS_BASE_URL=base)

    def csrf(resp) -> str:
        m = CSRF.search(resp.text)
        assert m, resp.text[:300]
        return m.group(1)

    def checkout(i: int) -> None:
        web = requests.Session()
        ctax_amount = f"{rng.randint(1, 900)}.{rng.randint(0, 99):02d}"
        for code, ref, amount in (("CTAX", refs[i % len(refs)], ctax_amount), ("TWS", f"TW{i}", "24.00")):
            token = csrf(web.get(f"{base}/pay/item/{code}"))
            r = web.post(f"{base}/pay/item/{code}", data={"csrf_token": token, "reference": ref,
                                                          "amount": amount}, allow_redirects=False)
            assert r.status_code == 302, (r.status_code, r.text[:500])
        token = csrf(web.get(f"{base}/pay/check"))
        r = web.post(f"{base}/pay/check", data={"csrf_token": token}, allow_redirects=False)
        assert r.status_code == 302 and "/simulator/secure/" in r.headers["Location"], r.text[:500]
        card_page = r.headers["Location"]
        assert web.get(card_page).status_code == 200
        r = web.post(card_page, data={"card_number": "4444333322221111", "action": "pay"},
                     allow_redirects=False)
        assert r.status_code == 303
        r = web.get(r.headers["Location"], allow_redirects=False)
        assert r.status_code == 200 and "R0" in r.text, r.text[:500]

    t0 = time.perf_counter()
    for i in range(args.checkouts):
        checkout(i)
    elapsed = time.perf_counter() - t0
    server.shutdown()

    with app.app_context():
        from app.extensions import db
        from app.models.card_payment import CardPayment
        from app.services.ledger import trial_balance

        paid = db.session.scalar(select(func.count(CardPayment.id))
                                 .where(CardPayment.status == "paid"))
        tb = trial_balance(db.session)
    print(f"portal bench on {dialect}: {args.checkouts} checkouts (2 items each, one client) in "
          f"{elapsed:.2f} s = {args.checkouts / elapsed:.1f} checkouts/s "
          "(wall, client and simulator included)")
    ims_total = sum(sum(v) for k, v in timings.items() if k.startswith("IMS "))
    print(f"  IMS's own handling: {ims_total / args.checkouts * 1000:.1f} ms per checkout "
          f"(= {args.checkouts / ims_total:.1f} checkouts/s of IMS time); target p95 < 100 ms per request")
    print(f"  {'request':52s} {'n':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
    for key in sorted(timings):
        v = timings[key]
        print(f"  {key:52s} {len(v):6d} {percentile(v, 50) * 1000:8.1f} {percentile(v, 95) * 1000:8.1f} "
              f"{max(v) * 1000:8.1f}")
    worst = max(percentile(v, 95) for k, v in timings.items() if k.startswith("IMS "))
    verdict = "meets" if worst < 0.1 else "MISSES"
    print(f"  worst IMS p95: {worst * 1000:.1f} ms ({verdict} the 100 ms target)")
    print(f"  card payments paid: {paid}; trial balance balanced: {tb['balanced']}")


if __name__ == "__main__":
    main()
