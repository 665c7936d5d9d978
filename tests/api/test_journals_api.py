"""Journals, undo and transfers through the API."""


def _receipt(api, amount="50.00", ref="AJ1"):
    r = api("cashier").post("/api/v1/receipts", json={"payment_method_code": "CASH", "lines": [
        {"fund_code": "TWS", "account_reference": ref, "amount": amount}]})
    assert r.status_code == 201, r.json
    return r.json["transactions"][0]["id"]


def test_journal_and_undo(api):
    tid = _receipt(api)
    body = {"transaction_id": tid, "reason": "Wrong account",
            "targets": [{"fund_code": "TWS", "account_reference": "AJ2", "amount": "20.00"},
                        {"fund_code": "TWS", "account_reference": "AJ3", "amount": "5.00"}]}
    assert api("cashier").post("/api/v1/journals", json=body).status_code == 403
    r = api("clerk").post("/api/v1/journals", json=body)
    assert r.status_code == 201, r.json
    assert r.json["number"].startswith("J") and len(r.json["targets"]) == 2
    assert all(t["source_transaction_id"] == tid for t in r.json["targets"])
    assert api("clerk").get(f"/api/v1/transactions/{tid}").json["available_amount"] == "25.00"
    gid = r.json["id"]
    assert api("clerk").post(f"/api/v1/journals/{gid}/undo", json={}).status_code == 422
    u = api("clerk").post(f"/api/v1/journals/{gid}/undo", json={"reason": "in error"})
    assert u.status_code == 201 and u.json["reverses_id"] == gid
    assert api("clerk").post(f"/api/v1/journals/{gid}/undo", json={"reason": "again"}).status_code == 409
    assert api("clerk").get(f"/api/v1/transactions/{tid}").json["available_amount"] == "50.00"
    assert api("clerk").post("/api/v1/journals/999999/undo", json={"reason": "x"}).status_code == 404


def test_journal_bad_input(api):
    tid = _receipt(api, "10.00", "AJB")
    for targets, field in [
        ([{"fund_code": "TWS", "account_reference": "X", "amount": "10.01"}], "targets"),
        ([{"fund_code": "TWS", "account_reference": "X", "amount": 1.5}], "targets[0].amount"),
        ([{"fund_code": "NOPE", "account_reference": "X", "amount": "1.00"}], "targets[0].fund_code"),
        ([], "targets"),
    ]:
        r = api("clerk").post("/api/v1/journals", json={"transaction_id": tid, "reason": "x",
                                                        "targets": targets})
        assert r.status_code == 422 and field in r.json["errors"], (targets, r.json)
    r = api("clerk").post("/api/v1/journals", json={"transaction_id": tid, "targets": [
        {"fund_code": "TWS", "account_reference": "X", "amount": "1.00"}]})
    assert r.status_code == 422 and "reason" in r.json["errors"]
    r = api("clerk").post("/api/v1/journals", json={"transaction_id": 10**8, "reason": "x", "targets": [
        {"fund_code": "TWS", "account_reference": "X", "amount": "1.00"}]})
    assert r.status_code == 404
    assert api("clerk").get(f"/api/v1/transactions/{tid}").json["available_amount"] == "10.00"


def test_transfers(api):
    tid = _receipt(api, "30.00", "AT1")
    r = api("clerk").post("/api/v1/transfers", json={
        "source_transaction_id": tid, "reason": "CTS credit",
        "targets": [{"fund_code": "TWS", "account_reference": "AT2", "amount": "10.00"},
                    {"fund_code": "TWS", "account_reference": "AT3", "amount": "20.00"}]})
    assert r.status_code == 201 and r.json["number"].startswith("T")
    a, b = _receipt(api, "4.00", "AP1"), _receipt(api, "6.00", "AP2")
    r = api("clerk").post("/api/v1/transfers", json={"reason": "pairs", "pairs": [
        {"transaction_id": a, "fund_code": "TWS", "account_reference": "AP3", "amount": "4.00"},
        {"transaction_id": b, "fund_code": "TWS", "account_reference": "AP4", "amount": "6.01"}]})
    assert r.status_code == 422
    r = api("clerk").post("/api/v1/transfers", json={"reason": "pairs", "pairs": [
        {"transaction_id": a, "fund_code": "TWS", "account_reference": "AP3", "amount": "4.00"},
        {"transaction_id": b, "fund_code": "TWS", "account_reference": "AP4", "amount": "6.00"}]})
    assert r.status_code == 201
    assert api("manager").post("/api/v1/transfers", json={}).status_code == 403
    assert api("clerk").post(f"/api/v1/transfers/{r.json['id']}/undo", json={"reason": "x"}).status_code == 201
