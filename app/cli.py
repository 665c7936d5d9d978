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
        from app.services.demo_activity import seed_activity

        counts.update(seed_demo(db.session, current_app.appbuilder))
        counts.update(seed_activity(db.session, current_app.instance_path))
        from app.services.demo_activity import seed_cash_ups

        counts.update(seed_cash_ups(db.session))
        from app.services.demo_activity import seed_reconciliation

        counts.update(seed_reconciliation(db.session))
        from app.services.demo_activity import seed_past_retention

        counts.update(seed_past_retention(db.session))
    for key, value in counts.items():
        click.echo(f"{key}: {value}")


@ims_cli.command("setup")
@click.option("--demo", is_flag=True, help="Also create demo users, accounts and activity.")
@click.pass_context
def setup(ctx: click.Context, demo: bool) -> None:
    """Install or upgrade in one go: migrate the database to head, audit-rekey, sync-roles,
    sync-workflows, seed (--demo for the demo data). What `make run` does; idempotent, and each
    step is also a command of its own. Stops at the first step that fails."""
    from flask_migrate import upgrade

    click.echo("== db upgrade")
    upgrade()
    for step, kwargs in ((audit_rekey, {"accept_broken": False}), (sync_roles_cmd, {}),
                         (sync_workflows_cmd, {}), (seed, {"demo": demo})):
        click.echo(f"== {step.name}")
        ctx.invoke(step, **kwargs)


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


@ims_cli.command("sync-workflows")
def sync_workflows_cmd() -> None:
    """Deploy workflows/*.bpmn as new versions when their content changed (validated first)."""
    from app.domain.errors import ValidationError
    from app.extensions import db
    from app.services.audit import set_actor
    from app.services.workflow import sync_workflows

    set_actor("sync-workflows")
    try:
        for line in sync_workflows(db.session):
            click.echo(line)
    except ValidationError as exc:
        click.echo(exc.message, err=True)
        for name, errors in exc.errors.items():
            for error in errors:
                click.echo(f"  {name}: {error}", err=True)
        sys.exit(1)


@ims_cli.command("audit-verify")
@click.option("--log", "logs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Also compare with the checkpoints in this application log (repeatable).")
def audit_verify(logs: tuple[str, ...]) -> None:
    """Check the audit trail's hash chain against its signed checkpoints; exit 1 naming what is
    missing or altered. When all is well, sign a checkpoint of the head."""
    from app.extensions import db
    from app.services import audit

    logged = []
    for path in logs:
        with open(path, encoding="utf-8", errors="replace") as fh:
            logged += audit.logged_checkpoints(fh)
    chained = audit.chain_pending(db.session)
    if chained.linked:
        click.echo(f"{chained.linked} events linked into the chain")
    result = audit.verify_chain(db.session, logged=logged)
    click.echo(result.message)
    if not result.valid:
        sys.exit(1)
    from app.services.personal import check

    altered = check(db.session)
    db.session.rollback()
    if altered:
        click.echo(f"personal values altered since the audit trail recorded them (their digest "
                   f"no longer matches): personal_data {', '.join(map(str, altered[:20]))}")
        sys.exit(1)
    if result.linked:
        cp = audit.write_checkpoint(db.session, result.linked, result.last_event_id,
                                    result.head_hash)
        click.echo(f"checkpoint {cp.id} signed: {cp.events} events to event {cp.last_event_id}")


@ims_cli.command("audit-rekey")
@click.option("--accept-broken", is_flag=True,
              help="Re-key a chain that does not verify, recording what is wrong in the event.")
def audit_rekey(accept_broken: bool) -> None:
    """Verify the audit chain and continue it with IMS_AUDIT_KEY (from plain SHA-256, or from an
    earlier key listed in IMS_AUDIT_PREVIOUS_KEYS), recording the switch as an event. Does
    nothing when the chain is already keyed with it."""
    from app.extensions import db
    from app.services import audit

    audit.set_actor("audit-rekey")
    result = audit.rekey(db.session, accept_broken=accept_broken)
    click.echo(result.message, err=not result.ok)
    if not result.ok:
        sys.exit(1)


def _write_batch(batch, output: str) -> None:
    if output == "-":
        sys.stdout.buffer.write(batch.content)
        sys.stdout.flush()
    else:
        with open(output, "wb") as fh:
            fh.write(batch.content)


def _run_batch(cut_off, layout: str, itemised: bool, output: str) -> None:
    from app.domain.errors import DomainError
    from app.domain.money import Money
    from app.extensions import db
    from app.services import audit
    from app.services import gl_export as G

    audit.set_actor("cli")
    try:
        batch = G.create_batch(db.session, cut_off=cut_off, layout=layout, actor="cli",
                               summarised=not itemised, trigger="cli")
    except DomainError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
    _write_batch(batch, output)
    click.echo(f"{batch.number}: {batch.line_count} lines, {batch.row_count} rows, control total "
               f"{Money(batch.control_total)}, sha256 {batch.sha256}", err=True)


@ims_cli.command("gl-export")
@click.option("--cut-off", "cut_off", required=True,
              type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Export every line not yet exported dated on or before this day (not in the future).")
@click.option("--layout", default="generic_journal_csv", show_default=True,
              help="Layout name: generic_journal_csv, oracle_fusion_gl_interface, unit4_gl07 or "
                   "one added with gl-layout-add.")
@click.option("--itemised", is_flag=True, help="One row per ledger line instead of summarised.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-",
              help="File to write (default: standard output).")
def gl_export(cut_off, layout: str, itemised: bool, output: str) -> None:
    """Run a GL export batch (recorded, audited; its file is kept for re-download)."""
    _run_batch(cut_off.date(), layout, itemised, output)


@ims_cli.command("gl-layout-add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def gl_layout_add(path: str) -> None:
    """Store a new version of a GL export layout from a JSON file (validated)."""
    from app.domain.errors import DomainError
    from app.extensions import db
    from app.services import audit
    from app.services import gl_layouts as LAY

    audit.set_actor("cli")
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        row = LAY.add_version(db.session, raw, actor="cli")
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"Layout {row.name} version {row.version} stored.")


@ims_cli.command("export-ledger")
@click.option("--date", "day", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="The cut-off day (YYYY-MM-DD).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-",
              help="CSV file to write (default: standard output).")
def export_ledger(day, output: str) -> None:
    """Kept for scripts: a thin wrapper over `gl-export --cut-off D --itemised` in the generic
    journal layout (every line not yet exported up to D, recorded as a batch)."""
    _run_batch(day.date(), "generic_journal_csv", True, output)


def _tick_once():
    """One tick, under a request id of its own: the registered jobs, then a checkpoint of the
    audit chain (last, so it covers what the jobs wrote), then the worker's heartbeat (what
    /readyz and /metrics read)."""
    import logging

    from app.extensions import db
    from app.observability import new_request_id, request_id_context
    from app.services import audit
    from app.services.jobs import run_tick
    from app.services.operations import record_tick

    log = logging.getLogger(__name__)
    with request_id_context(new_request_id("tick-")):
        lines = []
        for line in run_tick():
            lines.append(line)
            yield line
        try:
            line = f"audit-checkpoint: {audit.checkpoint(db.session).summary}"
        except Exception as exc:  # noqa: BLE001 - the worker goes on; the next tick tries again
            db.session.rollback()
            log.exception("audit checkpoint failed")
            line = f"audit-checkpoint: failed: {exc.__class__.__name__}"
        lines.append(line)
        yield line
        try:
            record_tick(db.session, "; ".join(lines))
        except Exception:  # noqa: BLE001 - a heartbeat never stops the worker
            db.session.rollback()
            log.exception("worker heartbeat not recorded")


@ims_cli.command("tick")
def tick() -> None:
    """Run due background work once (timers, ageing, queued imports, an audit checkpoint)."""
    for line in _tick_once():
        click.echo(line)


@ims_cli.command("worker")
@click.option("--interval", type=int, default=None, help="Seconds between ticks.")
@click.option("--once", is_flag=True, help="Tick once and exit.")
def worker(interval: int | None, once: bool) -> None:
    """Loop `tick` forever (several workers may run against one PostgreSQL)."""
    interval = interval or current_app.config["IMS_WORKER_INTERVAL"]
    while True:
        for line in _tick_once():
            click.echo(line)
        if once:
            return
        _link_audit_events_until(time.monotonic() + interval)


def _link_audit_events_until(deadline: float) -> None:
    """Between ticks: link the audit events requests wrote into the chain every
    IMS_AUDIT_CHAIN_INTERVAL seconds, so an event waits seconds, not a tick, to be chained."""
    import logging

    from app.extensions import db
    from app.services import audit

    every = current_app.config["IMS_AUDIT_CHAIN_INTERVAL"]
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(every, left))
        if every >= left:
            return
        try:
            audit.chain_pending(db.session)
        except Exception:  # noqa: BLE001 - the worker goes on; the next round tries again
            db.session.rollback()
            logging.getLogger(__name__).exception("audit chaining failed")
        finally:
            db.session.remove()


@ims_cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", required=True,
              type=click.Choice(["ims_csv", "bank_csv", "camt053", "mt940", "allpay"]))
@click.option("--profile", default=None, help="Bank profile name or id (bank_csv).")
@click.option("--user", default="cli", help="Who the postings are recorded against.")
@click.option("--queue", is_flag=True, help="Only check and queue it; `ims tick` posts it.")
def import_cmd(path: str, fmt: str, profile: str | None, user: str, queue: bool) -> None:
    """Import a bank or payment-agent file: check it whole, then post (or queue) it."""
    import os

    from app.domain.errors import DomainError
    from app.extensions import db
    from app.services import imports as svc
    from app.services.audit import set_actor

    set_actor(user)
    try:
        with open(path, "rb") as fh:
            batch = svc.receive_import(
                db.session, stream=fh, filename=os.path.basename(path), fmt=fmt,
                profile=profile, actor=user, instance_path=current_app.instance_path,
                max_bytes=current_app.config.get("IMS_IMPORT_MAX_BYTES", 50 * 1024 * 1024))
    except svc.ImportRejected as exc:
        click.echo(exc.message, err=True)
        for err in exc.lines:
            click.echo(f"  {err['message']}", err=True)
        sys.exit(1)
    except DomainError as exc:
        click.echo(exc.message, err=True)
        sys.exit(1)
    if queue:
        click.echo(f"import {batch.id}: queued ({batch.rows_total} rows)")
        return
    batch = svc.process_import(db.session, batch.id, actor=user)
    result = svc.import_result(batch)
    click.echo(f"import {batch.id}: {batch.status}; {result['rows_posted']} posted, "
               f"{result['rows_suspense']} to suspense, total £{result['total_amount']}")
    if batch.control_total:
        click.echo(f"control: {batch.control_total}")
    for dup in result["duplicates"]:
        click.echo(f"  {dup['message']} (line {dup['line']})")
    for err in result["errors"]:
        click.echo(f"  {err['message']}", err=True)
    if batch.status != "succeeded":
        sys.exit(1)


@ims_cli.command("backup")
@click.option("--output", "path", default=None,
              help="The backup file (default: instance/backups/ims-<UTC time>.backup).")
def backup_cmd(path: str | None) -> None:
    """Back up the database: pg_dump (custom format) on PostgreSQL, SQLite's online backup."""
    from app.domain.errors import DomainError
    from app.services.operations import backup, default_backup_path

    path = path or default_backup_path(current_app.instance_path)
    try:
        done = backup(current_app.config["SQLALCHEMY_DATABASE_URI"], path)
    except DomainError as exc:
        click.echo(f"Backup failed: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"Backed up to {done['path']} ({done['bytes']} bytes) at {done['at']}.")


@ims_cli.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Replace the database without asking.")
def restore_cmd(path: str, yes: bool) -> None:
    """Replace the configured database with a backup, then check its audit trail."""
    from app.domain.errors import DomainError
    from app.extensions import db
    from app.services.audit import verify_chain
    from app.services.operations import restore

    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    if not yes:
        click.confirm(f"Replace everything in {db.engine.url.render_as_string(hide_password=True)}"
                      f" with {path}?", abort=True)
    db.session.remove()
    db.engine.dispose()  # nothing may hold the database while it is replaced
    try:
        restore(url, path)
    except DomainError as exc:
        click.echo(f"Restore failed: {exc.message}", err=True)
        sys.exit(1)
    result = verify_chain(db.session)
    click.echo(f"Restored from {path}. Audit trail: {result.message}")
    sys.exit(0 if result.valid else 1)



accounts_cli = AppGroup("accounts", help="Account holders from the revenues systems.")
ims_cli.add_command(accounts_cli)


def _echo_sync(result: dict) -> None:
    click.echo(f"sync {result['id']}: {result['status']}; {result['lines']} lines, "
               f"{result['new']} new, {result['changed']} changed, {result['unchanged']} "
               f"unchanged, {result['missing']} missing (closed when applied), "
               f"{result['bad_lines']} bad")
    for item in result["sample"]:
        changes = "; ".join(f"{c['field']}: {c['before']!r} -> {c['after']!r}"
                            for c in item["changes"])
        click.echo(f"  line {item['line']} {item['reference']}: {changes}")


@accounts_cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--profile", required=True, help="Account-holder profile name or id.")
@click.option("--dry-run", is_flag=True, help="Only show what would change.")
@click.option("--user", default="cli", help="Who the change is recorded against.")
def accounts_import(path: str, profile: str, dry_run: bool, user: str) -> None:
    """Sync account holders from a revenues system's file: check it whole, then apply it."""
    import os

    from app.domain.errors import DomainError
    from app.extensions import db
    from app.services import accounts as svc
    from app.services.audit import set_actor

    set_actor(user)
    try:
        with open(path, "rb") as fh:
            sync = svc.receive(db.session, profile=profile, stream=fh,
                               filename=os.path.basename(path), actor=user,
                               instance_path=current_app.instance_path, source="cli",
                               max_bytes=current_app.config["IMS_ACCOUNT_SYNC_MAX_BYTES"])
        sync = svc.check_sync(db.session, sync.id)
        result = svc.sync_result(sync)
        if sync.status != "checked":
            click.echo(f"sync {sync.id}: {sync.status}: {sync.error}", err=True)
            for line in result["bad_line_list"]:
                click.echo(f"  {line['message']}", err=True)
            sys.exit(1)
        _echo_sync(result)
        for line in result["bad_line_list"]:
            click.echo(f"  skipped: {line['message']}")
        if dry_run:
            svc.discard(db.session, sync.id, actor=user)
            click.echo("dry run: nothing applied")
            return
        sync = svc.apply_sync(db.session, sync.id, actor=user)
        _echo_sync({**svc.sync_result(sync), "sample": []})
    except DomainError as exc:
        db.session.rollback()
        click.echo(exc.message, err=True)
        for line in getattr(exc, "lines", []):
            click.echo(f"  {line['message']}", err=True)
        sys.exit(1)


@ims_cli.command("migrate-localgov")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--user", default="migration", help="Who the migration is recorded against.")
def migrate_localgov(folder: str, user: str) -> None:
    """Load a LocalGov IMS export (CSV files of its tables): configuration, account holders and
    history, in one transaction; a second run adds nothing twice. Prints totals per fund."""
    from app.extensions import db
    from app.services import localgov
    from app.services.audit import set_actor

    set_actor(user)
    try:
        report = localgov.migrate(db.session, folder, actor=user)
    except localgov.ExportRefused as exc:
        click.echo(exc.message, err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    for line in report.lines():
        click.echo(line)
    if not report.agreed:
        sys.exit(2)


config_cli = AppGroup("config", help="Configuration bundles (move a set-up between sites).")
ims_cli.add_command(config_cli)


@config_cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@click.option("-o", "--output", default="-", help="File to write (default: standard output).")
def config_export(fmt: str, output: str) -> None:
    """Write this site's configuration as one versioned bundle."""
    from app.extensions import db
    from app.services import bundles

    text = bundles.dumps(bundles.export_bundle(db.session), fmt)
    if output == "-":
        click.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"written {output}")


@config_cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Only show the differences.")
@click.option("--user", default="cli", help="Who the change is recorded against.")
def config_import(path: str, dry_run: bool, user: str) -> None:
    """Show a bundle's differences from this site, then import it (all or nothing); approval
    limits and active workflows it changes are proposed for a second person's approval."""
    from app.domain.errors import DomainError
    from app.extensions import db
    from app.services import bundles
    from app.services.audit import set_actor

    set_actor(user)
    try:
        with open(path, "rb") as fh:
            bundle = bundles.loads(fh.read())
        plan = bundles.plan(db.session, bundle)
        for line in plan.lines():
            click.echo(line)
        db.session.rollback()
        if dry_run:
            click.echo("dry run: nothing imported")
            sys.exit(1 if plan.problems else 0)
        plan, made = bundles.import_bundle(db.session, bundle, actor=user)
    except DomainError as exc:
        db.session.rollback()
        click.echo(exc.message, err=True)
        for problems in exc.errors.values():
            for problem in problems:
                click.echo(f"  {problem}", err=True)
        sys.exit(1)
    click.echo("imported" + (f"; proposals waiting for approval: {made}" if made else ""))
