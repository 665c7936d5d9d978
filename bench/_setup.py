"""Shared bench helper: a fresh schema with reference data on DATABASE_URL (or a temp SQLite)."""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("IMS_ENV", "development")


def fresh_app(url: str | None):
    """An app on url (the database is WIPED), schema created, reference data seeded."""
    from config import DevelopmentConfig, _normalise_db_url

    cfg = type("BenchConfig", (DevelopmentConfig,), {})
    if url:
        cfg.SQLALCHEMY_DATABASE_URI = _normalise_db_url(url)
    else:
        path = os.path.join(tempfile.gettempdir(), f"ims-bench-ledger-{os.getpid()}.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        cfg.SQLALCHEMY_DATABASE_URI = "sqlite:///" + path
    from app import create_app

    app = create_app(cfg)
    with app.app_context():
        from flask_appbuilder import Model

        from app.extensions import db
        from app.models import install_database_objects
        from app.services.audit import set_actor
        from app.services.seed import seed_reference

        engine = db.engine
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        else:
            Model.metadata.drop_all(engine)
        Model.metadata.create_all(engine)
        install_database_objects(engine)
        set_actor("bench")
        seed_reference(db.session)
        db.session.commit()
    return app


def existing_app(url: str):
    """An app on url as it is (nothing wiped or created): for re-running a bench on data an
    earlier run loaded (bench/pages.py --reuse)."""
    from config import DevelopmentConfig, _normalise_db_url

    cfg = type("BenchConfig", (DevelopmentConfig,), {})
    cfg.SQLALCHEMY_DATABASE_URI = _normalise_db_url(url)
    from app import create_app

    return create_app(cfg)


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]
