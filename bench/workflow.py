"""Workflow benchmark: N approval instances started, approved and completed through the service
layer (database, task table, four-eyes checks, history, audit) against the same BPMN run by
SpiffWorkflow alone, its instance state (the spec stored once, as the IMS stores it per definition
version) saved in the same database at each step.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench_wf .venv/bin/python bench/workflow.py
    .venv/bin/python bench/workflow.py -n 200          # SQLite (a fresh temporary file)

The baseline is what any product running this BPMN on SpiffWorkflow must do at least: start the
instance, run its engine steps and save its serialized state in one transaction; to approve,
read that state back (locked: FOR UPDATE on PostgreSQL, the write lock on SQLite, as the IMS
locks an instance), restore it, complete the user task, run the engine steps, save the state and
commit. It writes one row per instance (``bench_raw_instance``: id, state) through the same
engine, driver and connection pool as the IMS, with prebuilt SQLAlchemy Core statements, and
uses SpiffWorkflow's own eval-based script engine. What the IMS does beyond that (the task table
and its inbox read, the history rows, the audit chain, four-eyes and fund checks, approval limits
from the database) is what the ratio measures. The same engine with its state kept in memory
(no database at all) is printed too, for reference.

The database named by DATABASE_URL is wiped (schema recreated). Prints its figures.
Targets: our path within 2x of the persisted baseline; task completion p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("IMS_ENV", "development")

BPMN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflows",
                    "approval_demo.bpmn")


def setup(url: str | None):
    """A fresh schema (the database is WIPED) with demo users and the workflows deployed."""
    from _setup import fresh_app

    app = fresh_app(url)
    with app.app_context():
        from app.extensions import db
        from app.services.seed import seed_demo
        from app.services.workflow import sync_workflows

        seed_demo(db.session, app.appbuilder)
        sync_workflows(db.session)
        RAW_TABLE.create(db.engine)
    return app


def _raw_table():
    from sqlalchemy import Column, Integer, MetaData, Table, Text

    return Table("bench_raw_instance", MetaData(), Column("id", Integer, primary_key=True),
                 Column("state_json", Text, nullable=False))


RAW_TABLE = _raw_table()


def p95(values):
    return statistics.quantiles(values, n=100)[94] if len(values) >= 20 else max(values)


def ours(app, n: int, offset: int = 0) -> dict:
    from sqlalchemy import select

    from app.extensions import db
    from app.models.workflow import WorkflowTask
    from app.services.workflow import complete_task, start_workflow

    starts, completes = [], []
    with app.app_context():
        session = db.session
        t0 = time.perf_counter()
        for i in range(n):
            a = time.perf_counter()
            instance = start_workflow(session, "approval_demo", "demo", f"bench-{offset + i}", "clerk",
                                      {"amount_pence": 10_000 + i, "reason": "bench",
                                       "action": "refund"})
            instance_id = instance.id
            session.commit()
            task_id = session.scalar(select(WorkflowTask.id).where(  # the inbox row
                WorkflowTask.instance_id == instance_id, WorkflowTask.status == "ready"))
            b = time.perf_counter()
            result = complete_task(session, task_id, "manager", "approve", "ok")
            c = time.perf_counter()
            assert result.outcome == "approved", result
            starts.append(b - a)
            completes.append(c - b)
            session.expire_all()
        total = time.perf_counter() - t0
    return {"total": total, "starts": starts, "completes": completes}


def _state_only_serializer():
    """SpiffWorkflow's serializer with the workflow converter writing the instance's state only
    (tasks, data, subprocesses, events) and restoring it onto a spec given at load time: the
    definition is stored once, not with every instance."""
    from uuid import UUID

    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.serializer.default.workflow import (
        BpmnWorkflowConverter,
        WorkflowConverter,
    )
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

    class StateOnly(BpmnWorkflowConverter):
        def to_dict(self, workflow):
            dct = WorkflowConverter.to_dict(self, workflow)
            dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
            dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
            return dct

        def from_dict(self, dct, spec=None, subprocess_specs=None):
            workflow = self.target_class(spec, subprocess_specs or {}, deserializing=True)
            workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
            workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
            self.set_default_attributes(workflow, dct)
            self.subprocesses_from_dict(dct["subprocesses"], workflow)
            workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
            return workflow

    config = dict(SPIFF_CONFIG)
    config[BpmnWorkflow] = StateOnly
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))


def raw(n: int, engine=None) -> dict:
    """SpiffWorkflow alone: the default (eval-based) script engine; the instance's state saved
    as JSON at each step and restored onto the spec parsed once. With ``engine`` (the app's
    database engine) the state is saved in the database, one transaction per step, and read back
    (locked) to approve; without, it is kept in memory (no database: for reference only)."""
    from sqlalchemy import bindparam, insert, select, update
    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    from SpiffWorkflow.util.task import TaskState

    from app.services.locking import write_lock

    class Engine(PythonScriptEngine):
        def call_service(self, task, operation_name=None, operation_params=None, **kw):
            data = task.data
            if operation_name == "approval_route":
                out = {"approvals_required": 1, "approval_roles": ["Finance Manager"],
                       "approval_step": 0, "current_role": ""}
            elif operation_name == "next_approver":
                step = data["approval_step"]
                out = ({"current_role": data["approval_roles"][step], "approval_step": step + 1}
                       if step < data["approvals_required"] else {"current_role": ""})
            elif operation_name == "set_outcome":
                out = {"outcome": operation_params["outcome"]["value"]}
            else:
                out = {}
            data.update(out)
            return json.dumps(out)

    parser = SpiffBpmnParser()
    parser.add_bpmn_file(BPMN)
    spec = parser.get_spec("approval_demo")
    subs = parser.get_subprocess_specs("approval_demo")
    serializer = _state_only_serializer()
    t = RAW_TABLE
    insert_state = insert(t).returning(t.c.id)
    read_state = select(t.c.state_json).where(t.c.id == bindparam("b_id")).with_for_update()
    write_state = update(t).where(t.c.id == bindparam("b_id")).values(
        state_json=bindparam("b_state"))

    def save(wf) -> str:
        return json.dumps(serializer.to_dict(wf), separators=(",", ":"), default=str)

    def load(saved: str):
        return serializer.registry.restore(json.loads(saved), spec=spec, subprocess_specs=subs)

    completes = []
    t0 = time.perf_counter()
    for i in range(n):
        wf = BpmnWorkflow(spec, subs, script_engine=Engine())
        for task in wf.get_tasks(state=TaskState.READY):
            task.data.update({"action": "refund", "amount_pence": 10_000 + i, "requester": "clerk",
                              "reason": "bench", "escalate_after": "P3D"})
        wf.do_engine_steps()
        if engine is None:
            saved = save(wf)
        else:
            with engine.begin() as conn:
                instance_id = conn.execute(insert_state, {"state_json": save(wf)}).scalar_one()
        b = time.perf_counter()
        if engine is None:
            wf = load(saved)
        else:
            conn = engine.connect()
            conn.begin()
            write_lock(conn)  # SQLite: as the IMS locks the instance to complete a task
            wf = load(conn.execute(read_state, {"b_id": instance_id}).scalar_one())
        wf.script_engine = Engine()
        [task] = wf.get_tasks(state=TaskState.READY, manual=True)
        task.data.update({"decision": "approve", "comment": "ok"})
        task.run()
        wf.do_engine_steps()
        if engine is None:
            saved = save(wf)
        else:
            conn.execute(write_state, {"b_id": instance_id, "b_state": save(wf)})
            conn.commit()
            conn.close()
        completes.append(time.perf_counter() - b)
        assert wf.is_completed()
    total = time.perf_counter() - t0
    return {"total": total, "completes": completes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="instances (default 1000)")
    parser.add_argument("--chunks", type=int, default=10,
                        help="alternate the baselines and ours in this many chunks so all see the same "
                             "machine load (default 10)")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    app = setup(url)
    with app.app_context():
        from app.extensions import db

        engine = db.engine
        dialect = engine.dialect.name
    raw(20)  # warm up every path (imports, spec cache, prepared statements)
    raw(20, engine)
    ours(app, 20, offset=10**6)
    mem = {"total": 0.0, "completes": []}
    r = {"total": 0.0, "completes": []}
    o = {"total": 0.0, "starts": [], "completes": []}
    size = max(1, args.n // args.chunks)
    done = 0
    while done < args.n:
        k = min(size, args.n - done)
        for acc, part in ((mem, raw(k)), (r, raw(k, engine)), (o, ours(app, k, offset=done))):
            for key, value in part.items():
                acc[key] += value
        done += k
    for acc in (mem, r, o):
        acc["complete_p50"] = statistics.median(acc["completes"])
        acc["complete_p95"] = p95(acc["completes"])
    o["start_p50"], o["start_p95"] = statistics.median(o["starts"]), p95(o["starts"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ms = 1000

    def figures(acc):
        return (f"{acc['total']:.2f} s ({acc['total'] / args.n * ms:.2f} ms/instance; completion "
                f"p50 {acc['complete_p50'] * ms:.2f} ms, p95 {acc['complete_p95'] * ms:.2f} ms)")

    print(f"workflow benchmark: {args.n} approval instances (refund, one Finance Manager approval) "
          f"on {dialect}")
    print(f"  baseline: SpiffWorkflow alone, state saved in the database per step (spec stored "
          f"once): {figures(r)}")
    print(f"  IMS service layer (DB, task table, four-eyes, history, audit): {figures(o)}")
    print(f"    start_workflow p50 {o['start_p50'] * ms:.2f} ms, p95 {o['start_p95'] * ms:.2f} ms")
    print(f"    complete_task  p50 {o['complete_p50'] * ms:.2f} ms, p95 {o['complete_p95'] * ms:.2f} ms "
          f"(target < 50 ms: {'met' if o['complete_p95'] < 0.05 else 'NOT met'})")
    ratio = o["total"] / r["total"]
    print(f"  ratio ours/baseline: {ratio:.2f}x (target <= 2x: {'met' if ratio <= 2 else 'NOT met'})")
    print(f"  (for reference, SpiffWorkflow with its state kept in memory, no database: "
          f"{figures(mem)}; ours/in-memory {o['total'] / mem['total']:.2f}x)")
    print(f"  (the three alternate in {args.chunks} chunks; 1-minute load average at the end: "
          f"{load:.2f} on {os.cpu_count()} CPUs)")

if __name__ == "__main__":
    main()
