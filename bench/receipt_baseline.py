"""The receipts benchmark's baseline: a bare Flask endpoint that checks the same JWT as the IMS
(flask_jwt_extended, the same secret) and writes the same rows for a receipt — a posting group
numbered from the same sequence, its ledger lines (Dr Bank, Cr each fund line), one income
transaction per line and one sealed audit event (HMAC of its fields) per row group as the IMS
writes (three for a two-line receipt) — with plain psycopg in one transaction per receipt. No validation, no ORM, no
audit chain: what is left is the cost of the web stack and the database's own work.

    gunicorn -c deploy/gunicorn.conf.py bench.receipt_baseline:app     (bench/receipts.py runs it)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os

import psycopg
from flask import Flask, jsonify, request
from flask_jwt_extended import JWTManager, get_jwt_identity, jwt_required

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev-only-change-me")
JWTManager(app)
_DSN = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
_KEY = os.environ.get("IMS_AUDIT_KEY", "bench-audit-key").encode()
_conn: psycopg.Connection | None = None


def _db() -> psycopg.Connection:
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(_DSN)
    return _conn


def _audit(cur, now, actor, action, entity, entity_id, after) -> None:
    body = json.dumps(after, sort_keys=True)
    digest = hmac.new(_KEY, f"{now}|{actor}|{action}|{entity}|{entity_id}|{body}".encode(),
                      hashlib.sha256).hexdigest()
    cur.execute("INSERT INTO audit_event (occurred_at, actor, action, entity, entity_id, after, "
                "mac, key_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (now, actor, action, entity, str(entity_id), body, digest, "bench"))


@app.post("/api/v1/receipts")
@jwt_required()
def receipt():
    user_id = get_jwt_identity()
    body = request.get_json()
    lines = body["lines"]
    conn = _db()
    now = dt.datetime.now(dt.timezone.utc)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT username FROM ab_user WHERE id = %s AND active", (int(user_id),))
        actor = cur.fetchone()[0]
        cur.execute("SELECT nextval('ims_number_r')")
        number = f"R{cur.fetchone()[0]:06d}"
        amounts = [round(float(line["amount"]) * 100) for line in lines]
        total = sum(amounts)
        cur.execute("INSERT INTO posting_group (kind, number, created_at, created_by, office_code) "
                    "VALUES ('receipt', %s, %s, %s, %s) RETURNING id",
                    (number, now, actor, body.get("office_code")))
        gid = cur.fetchone()[0]
        tids = []
        for line, amount in zip(lines, amounts):
            cur.execute(
                "INSERT INTO income_transaction (receipt_number, fund_code, account_reference, "
                "amount, vat_code, vat_amount, payment_method_code, transaction_date, "
                "office_code, created_by, created_at, posting_group_id) VALUES "
                "(%s, %s, %s, %s, NULL, 0, %s, %s, %s, %s, %s, %s) RETURNING id",
                (number, line["fund_code"], line["account_reference"], amount,
                 body["payment_method_code"], now.date(),
                 body.get("office_code"), actor, now, gid))
            tids.append(cur.fetchone()[0])
        # narratives live in their own erasable table (as the IMS writes them)
        narratives = [(tid, line["narrative"], line["fund_code"], now.date())
                      for tid, line in zip(tids, lines) if line.get("narrative")]
        if narratives:
            cur.executemany("INSERT INTO transaction_narrative (transaction_id, narrative, "
                            "fund_code, transaction_date) VALUES (%s, %s, %s, %s)", narratives)
        rows = [(gid, "BANK", None, None, total, None)] + [
            (gid, "FUND", line["fund_code"], line["account_reference"], -amount, tid)
            for line, amount, tid in zip(lines, amounts, tids)]
        # one statement, as the IMS posts: the database checks each statement's groups balance
        cur.execute("INSERT INTO ledger_line (group_id, account, fund_code, account_reference, "
                    "amount, transaction_id) VALUES "
                    + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows)),
                    [v for row in rows for v in row])
        _audit(cur, now, actor, "post", "PostingGroup", gid, {"number": number})
        for tid, line in zip(tids, lines):
            _audit(cur, now, actor, "receipt", "Transaction", tid, line)
    return jsonify(receipt_number=number, total=f"{total / 100:.2f}"), 201
