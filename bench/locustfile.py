"""Load test users (run by bench/load.py, which starts gunicorn on PostgreSQL and checks the
database afterwards): cashiers posting receipts, clerks searching, requesting refunds and
allocating suspense, managers approving. Each waits 1-3 s between tasks.

Refusals that are the right answer under concurrency — a suspense item another clerk allocated
first (409/422), a task another manager completed first (409) — are counted as successes of
their own name, not errors. Every receipt carries an external reference; bench/load.py checks
each one answered 201 is in the database exactly once.
"""

from __future__ import annotations

import json
import os
import random
import uuid

from locust import HttpUser, between, events, task

REFS = json.loads(os.environ.get("IMS_LOAD_REFS", "[]"))
RECEIPTS_OK: list[str] = []


@events.test_stop.add_listener
def _write_receipts(environment, **kw):
    path = os.environ.get("IMS_LOAD_RECEIPTS_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(RECEIPTS_OK))


class _ImsUser(HttpUser):
    abstract = True
    wait_time = between(1, 3)
    usernames: tuple[str, ...] = ()

    def on_start(self):
        r = self.client.post("/api/v1/security/login", json={
            "username": random.choice(self.usernames), "password": "Passw0rd!", "provider": "db"},
            name="login")
        self.client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"


class Cashier(_ImsUser):
    weight = 5
    usernames = ("cashier",)

    @task
    def receipt(self):
        ext = uuid.uuid4().hex[:20]
        body = {"payment_method_code": "CASH", "external_reference": ext, "lines": [
            {"fund_code": "CTAX", "account_reference": random.choice(REFS),
             "amount": f"{random.randint(1, 400)}.{random.randint(0, 99):02d}"},
            {"fund_code": "TWS", "account_reference": f"TW{random.randint(1, 99999)}",
             "amount": "24.00", "narrative": "sacks"}]}
        with self.client.post("/api/v1/receipts", json=body, name="POST receipt",
                              catch_response=True) as r:
            if r.status_code == 201:
                RECEIPTS_OK.append(ext)
                r.success()
            else:
                r.failure(f"{r.status_code} {r.text[:200]}")


class Clerk(_ImsUser):
    weight = 3
    usernames = ("clerk", "clerk2")

    @task(3)
    def search(self):
        self.client.get(f"/api/v1/transactions/?narrative={random.choice(['sacks', 'jones', 'rent'])}"
                        "&page_size=50", name="GET search")

    @task(2)
    def allocate(self):
        r = self.client.get("/api/v1/suspense/?q=(filters:!((col:status,opr:eq,value:unallocated)),"
                            "page_size:25)", name="GET suspense")
        items = (r.json() or {}).get("result", []) if r.status_code == 200 else []
        if not items:
            return
        item = random.choice(items)
        with self.client.post(f"/api/v1/suspense/{item['id']}/allocations", json={
                "lines": [{"fund_code": "TWS", "account_reference": f"TW{item['id']}",
                           "amount": item.get("remaining_amount") or item["amount"]}],
                "note": "load test"}, name="POST allocation", catch_response=True) as a:
            if a.status_code == 201:
                a.success()
            elif a.status_code in (409, 422):  # another clerk took it first: the right answer
                a.success()
                self.environment.events.request.fire(
                    request_type="POST", name="allocation refused (taken first)",
                    response_time=a.elapsed.total_seconds() * 1000, response_length=0,
                    exception=None, context={})
            else:
                a.failure(f"{a.status_code} {a.text[:200]}")

    @task(1)
    def refund(self):
        r = self.client.get("/api/v1/transactions/?narrative=sacks&page_size=20", name="GET search")
        rows = (r.json() or {}).get("result", []) if r.status_code == 200 else []
        rows = [t for t in rows if t.get("available_amount") not in (None, "0.00")]
        if not rows:
            return
        t = random.choice(rows)
        with self.client.post("/api/v1/refunds", json={
                "transaction_id": t["id"], "amount": "1.00", "reason": "load test",
                "method": "cheque", "payee": {"name": "Load Test"}},
                name="POST refund", catch_response=True) as a:
            if a.status_code in (201, 409, 422):  # 422/409: nothing left to refund — correct
                a.success()
            else:
                a.failure(f"{a.status_code} {a.text[:200]}")


class Manager(_ImsUser):
    weight = 2
    usernames = ("manager", "manager2")

    @task
    def approve(self):
        r = self.client.get("/api/v1/tasks/", name="GET tasks")
        tasks = r.json() if r.status_code == 200 else []
        if isinstance(tasks, dict):
            tasks = tasks.get("result", [])
        if not tasks:
            return
        t = random.choice(tasks)
        with self.client.post(f"/api/v1/tasks/{t['id']}/complete",
                              json={"decision": "approve", "comment": "load test"},
                              name="POST approve", catch_response=True) as a:
            if a.status_code == 200 or a.status_code in (403, 409):
                a.success()  # 409: another manager completed it first; 403: four-eyes says no
            else:
                a.failure(f"{a.status_code} {a.text[:200]}")
