"""Notifications: users and roles, unread counts, own items only, e-mail after commit only."""

from __future__ import annotations

import socket
import threading

import pytest
from sqlalchemy import select

from app.domain.errors import NotFound
from app.models.notification import Notification
from app.services import notifications as N


class FakeSmtp:
    """A tiny SMTP server on 127.0.0.1 that records each message's DATA."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.messages: list[tuple[list[str], str]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as rf:
                conn.sendall(b"220 fake\r\n")
                rcpts, data_mode, lines = [], False, []
                for raw in rf:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if data_mode:
                        if line == ".":
                            self.messages.append((rcpts, "\n".join(lines)))
                            rcpts, data_mode, lines = [], False, []
                            conn.sendall(b"250 queued\r\n")
                        else:
                            lines.append(line)
                        continue
                    cmd = line[:4].upper()
                    if cmd == "EHLO" or cmd == "HELO":
                        conn.sendall(b"250 fake\r\n")
                    elif cmd == "RCPT":
                        rcpts.append(line.split(":", 1)[1].strip(" <>"))
                        conn.sendall(b"250 ok\r\n")
                    elif cmd == "DATA":
                        data_mode = True
                        conn.sendall(b"354 go\r\n")
                    elif cmd == "QUIT":
                        conn.sendall(b"221 bye\r\n")
                        break
                    else:
                        conn.sendall(b"250 ok\r\n")

    def close(self):
        self.sock.close()


def test_notify_users_and_roles_unread_count_and_mark_read(session):
    before = N.unread_count(session, "manager2")
    notes = N.notify(session, ["Finance Manager", "clerk", "nobody-such"], "Hello managers", "/x",
                     exclude=["manager"])
    session.commit()
    names = {n.username for n in notes}
    assert {"manager2", "clerk"} <= names and "manager" not in names and "nobody-such" not in names
    assert N.unread_count(session, "manager2") == before + 1
    mine = N.for_user(session, "manager2", unread_only=True)
    assert mine[0].message == "Hello managers"
    other = session.scalars(select(Notification).where(Notification.username == "clerk")
                            .order_by(Notification.id.desc()).limit(1)).one()
    with pytest.raises(NotFound):  # never someone else's
        N.mark_read(session, "manager2", other.id)
    assert N.mark_read(session, "manager2", mine[0].id) == 1
    assert N.unread_count(session, "manager2") == before
    N.mark_read(session, "clerk")
    assert N.unread_count(session, "clerk") == 0


def test_email_only_after_commit_and_skipped_without_a_server(app, session):
    smtp = FakeSmtp()
    old = app.config.get("MAIL_SERVER")
    try:
        app.config["MAIL_SERVER"] = ""
        N.notify(session, ["head"], "No server, no mail")
        session.commit()
        app.config["MAIL_SERVER"] = f"127.0.0.1:{smtp.port}"
        N.notify(session, ["head"], "Rolled back: never sent")
        session.rollback()
        N.notify(session, ["head"], "Refund 1 awaits you", "/tasks/")
        assert smtp.messages == []  # not before the commit
        session.commit()
        assert len(smtp.messages) == 1
        rcpts, data = smtp.messages[0]
        assert rcpts == ["head@llanwern.gov.uk.invalid"]
        assert "Refund 1 awaits you" in data and "/tasks/" in data
    finally:
        app.config["MAIL_SERVER"] = old
        smtp.close()
