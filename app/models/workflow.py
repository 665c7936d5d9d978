"""Workflow tables: definitions (versions), instances, the ready-task projection, history, limits."""

from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.domain.money import Money
from app.models.base import UTCDateTime, utcnow

APPROVAL_ACTIONS = ("refund", "write_off", "suspense_allocation", "cash_up")


class WorkflowDefinition(Model):
    """One deployed version of a BPMN process (keyed by the sha256 of its XML)."""

    __tablename__ = "workflow_definition"
    __table_args__ = (
        UniqueConstraint("process_id", "version", name="uq_workflow_definition_version"),
        UniqueConstraint("process_id", "sha256", name="uq_workflow_definition_sha"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process_id: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    bpmn_xml: Mapped[str] = mapped_column(Text, nullable=False, deferred=True)
    spec_json: Mapped[str] = mapped_column(Text, nullable=False, deferred=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    deployed_by: Mapped[str] = mapped_column(String(100), nullable=False, default="system")

    def __repr__(self) -> str:
        return f"{self.process_id} v{self.version}"


class WorkflowInstance(Model):
    """A running or finished workflow about one subject, pinned to the version it started on."""

    __tablename__ = "workflow_instance"
    __table_args__ = (
        Index("ix_workflow_instance_subject", "subject_type", "subject_id"),
        Index("ix_workflow_instance_due", "status", "next_timer_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("workflow_definition.id"), nullable=False)
    process_id: Mapped[str] = mapped_column(String(100), nullable=False)
    subject_type: Mapped[str] = mapped_column(String(50), nullable=False)
    subject_id: Mapped[str] = mapped_column(String(50), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="running")
    outcome: Mapped[str | None] = mapped_column(String(20))
    requester: Mapped[str] = mapped_column(String(100), nullable=False)
    started_by: Mapped[str] = mapped_column(String(100), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    amount_pence: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    state_json: Mapped[str] = mapped_column(Text, nullable=False)
    serializer_version: Mapped[str] = mapped_column(String(40), nullable=False)
    next_timer_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    definition: Mapped[WorkflowDefinition] = relationship()
    tasks: Mapped[list["WorkflowTask"]] = relationship(back_populates="instance",
                                                       order_by="WorkflowTask.created_at")
    events: Mapped[list["WorkflowEvent"]] = relationship(back_populates="instance",
                                                         order_by="WorkflowEvent.id")

    @property
    def amount(self) -> Money | None:
        return None if self.amount_pence is None else Money(self.amount_pence)

    def __repr__(self) -> str:
        return f"{self.process_id} #{self.id} ({self.subject_type} {self.subject_id})"


class WorkflowTask(Model):
    """A user task projected from the engine: the inbox is a query on this table."""

    __tablename__ = "workflow_task"
    __table_args__ = (Index("ix_workflow_task_ready", "status", "role"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # SpiffWorkflow task UUID
    instance_id: Mapped[int] = mapped_column(ForeignKey("workflow_instance.id"), nullable=False,
                                             index=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)  # BPMN element id
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(100), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="ready")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_by: Mapped[str | None] = mapped_column(String(100))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision: Mapped[str | None] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)

    instance: Mapped[WorkflowInstance] = relationship(back_populates="tasks")


class WorkflowEvent(Model):
    """The instance history: started, approved, rejected, escalated, completed."""

    __tablename__ = "workflow_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("workflow_instance.id"), nullable=False,
                                             index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)
    action: Mapped[str] = mapped_column(String(30), nullable=False)
    task_id: Mapped[str | None] = mapped_column(String(36))
    task_title: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(100))
    comment: Mapped[str | None] = mapped_column(Text)

    instance: Mapped[WorkflowInstance] = relationship(back_populates="events")


class ApprovalLimit(Model):
    """Scheme of delegation: who must approve an action in an amount band, in order."""

    __tablename__ = "approval_limit"
    __table_args__ = (
        CheckConstraint("min_amount >= 0", name="ck_approval_limit_min"),
        CheckConstraint("max_amount IS NULL OR max_amount >= min_amount",
                        name="ck_approval_limit_band"),
        CheckConstraint("approvals_required >= 0", name="ck_approval_limit_required"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(30), nullable=False, index=True)
    min_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    max_amount: Mapped[int | None] = mapped_column(BigInteger)
    approvals_required: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    roles: Mapped[str] = mapped_column(String(300), nullable=False, default="")

    @property
    def role_list(self) -> list[str]:
        return [r.strip() for r in (self.roles or "").split(",") if r.strip()]

    def __repr__(self) -> str:
        hi = "no limit" if self.max_amount is None else str(Money(self.max_amount))
        return f"{self.action} {Money(self.min_amount)}–{hi}"


class ConfigProposal(Model):
    """A configuration change a Workflow Administrator proposed (a new workflow version, a roll
    back, new approval limits); it takes effect when a Head of Finance approves it."""

    __tablename__ = "config_proposal"
    __table_args__ = (
        Index("ix_config_proposal_status", "status", "kind"),
        CheckConstraint("kind IN ('workflow_deploy', 'workflow_activate', 'approval_limits')",
                        name="ck_config_proposal_kind"),
        CheckConstraint("status IN ('pending', 'approved', 'rejected')",
                        name="ck_config_proposal_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    #: the process id (workflow kinds) or the actions, comma-separated (approval limits)
    target: Mapped[str] = mapped_column(String(100), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    proposed_by: Mapped[str] = mapped_column(String(100), nullable=False)
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    #: workflow kinds: the version to make active, and the version active when it was proposed
    definition_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_definition.id"))
    base_version: Mapped[int | None] = mapped_column(Integer)
    #: approval limits: JSON {"schemes": {action: bands}, "before": {...}, "fingerprints": {...},
    #: "complete": bool}
    payload: Mapped[str | None] = mapped_column(Text)
    workflow_instance_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_instance.id"))
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_comment: Mapped[str | None] = mapped_column(Text)

    definition: Mapped[WorkflowDefinition | None] = relationship()

    def __repr__(self) -> str:
        return f"proposal {self.id} ({self.kind} {self.target}, {self.status})"
