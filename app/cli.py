"""`flask --app run ims ...` commands."""

from __future__ import annotations

import sys
import time

import click
from flask import current_app
from flask.cli import AppGroup

ims_cli = AppGroup("ims", help="Income Management System commands.")


@ims_cli.command("seed")
@click.option("--demo", is_flag=True, help="Also create demo users, accounts and activity.")
def seed(demo: bool) -> None:
    """Seed reference data (and demo data). Idempotent: a second run changes nothing."""
    from app.extensions import db
    from app.services.audit import set_actor
    from app.services.seed import seed_demo, seed_reference

    set_actor("seed")
    counts = seed_reference(db.session)
    if demo:
        counts.update(seed_demo(db.session, current_app.appbuilder))
    for key, value in counts.items():
        click.echo(f"{key}: {value}")


@ims_cli.command("sync-roles")
def sync_roles_cmd() -> None:
    """Create permissions and apply app/security/roles.py to the roles."""
    from app.extensions import db
    from app.security.sync import sync_roles
    from app.services.audit import set_actor

    set_actor("sync-roles")
    counts = sync_roles(current_app.appbuilder, db.session)
    for role, n in counts.items():
        click.echo(f"{role}: {n} permissions")


@ims_cli.command("audit-verify")
def audit_verify() -> None:
    """Check the audit trail's hash chain; exit 1 naming the first broken event."""
    from app.extensions import db
    from app.services.audit import verify_chain

    result = verify_chain(db.session)
    click.echo(result.message)
    if not result.valid:
        sys.exit(1)


@ims_cli.command("tick")
def tick() -> None:
    """Run due background work once (timers, ageing, queued imports)."""
    from app.services.jobs import run_tick

    for line in run_tick():
        click.echo(line)


@ims_cli.command("worker")
@click.option("--interval", type=int, default=None, help="Seconds between ticks.")
@click.option("--once", is_flag=True, help="Tick once and exit.")
def worker(interval: int | None, once: bool) -> None:
    """Loop `tick` forever (several workers may run against one PostgreSQL)."""
    from app.services.jobs import run_tick

    interval = interval or current_app.config["IMS_WORKER_INTERVAL"]
    while True:
        for line in run_tick():
            click.echo(line)
        if once:
            return
        time.sleep(interval)
