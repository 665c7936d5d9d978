def test_login_and_home(as_user):
    client = as_user("admin")
    resp = client.get("/")
    assert resp.status_code == 200
    assert b"Welcome" in resp.data and b"Administration" in resp.data


def test_anonymous_redirected_to_login(client):
    resp = client.get("/")
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]
