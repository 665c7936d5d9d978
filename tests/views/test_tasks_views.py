"""My tasks, the task page, the Workflows page and the instance page in the web UI."""

import io
import re

from tests.workflows.helpers import OUTCOMES, demo_xml, ready_tasks, start


def _count(html: str) -> int:
    m = re.search(r'class="ims-task-count">(\d+)<', html)
    assert m, "no My tasks count in the navigation bar"
    return int(m.group(1))


def test_navbar_count_and_inbox_list_the_users_tasks(session, as_user):
    client = as_user("manager2")
    before = _count(client.get("/tasks/").get_data(as_text=True))
    instance = start(session, 42_00, reason="Paid twice by card")
    [task] = ready_tasks(session, instance.id)
    page = client.get("/tasks/").get_data(as_text=True)
    assert _count(page) == before + 1
    assert task.id in page and "42.00" in page
    clerk_page = as_user("clerk").get("/tasks/").get_data(as_text=True)
    assert task.id not in clerk_page  # the requester never sees it


def test_task_page_shows_the_request_and_approving_works(session, as_user):
    instance = start(session, 723_45, reason="Paid twice by card")
    [task] = ready_tasks(session, instance.id)
    client = as_user("manager")
    page = client.get(f"/tasks/{task.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for text in ("723.45", "clerk", "Paid twice by card", f"Test request {instance.subject_id}",
                 "Test reference", "test subject created", 'name="decision" value="approve"',
                 'name="decision" value="reject"'):
        assert text in html, text
    resp = client.post(f"/tasks/{task.id}/complete", data={"decision": "approve", "comment": ""})
    assert resp.status_code == 302
    [second] = ready_tasks(session, instance.id)
    assert second.role == "Head of Finance"


def test_reject_without_comment_is_refused_then_reject_with_comment(session, as_user):
    instance = start(session, 10_00)
    [task] = ready_tasks(session, instance.id)
    client = as_user("manager")
    resp = client.post(f"/tasks/{task.id}/complete", data={"decision": "reject", "comment": ""})
    assert resp.status_code == 422 and "reason" in resp.get_data(as_text=True)
    resp = client.post(f"/tasks/{task.id}/complete",
                       data={"decision": "reject", "comment": "Wrong account"})
    assert resp.status_code == 302
    assert OUTCOMES[instance.subject_id] == ["rejected"]


def test_requester_and_other_roles_see_why_they_cannot_decide(session, as_user):
    instance = start(session, 10_00, requester="manager")
    [task] = ready_tasks(session, instance.id)
    client = as_user("manager")
    html = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "four-eyes" in html and 'id="decision-form"' not in html
    resp = client.post(f"/tasks/{task.id}/complete", data={"decision": "approve"})
    assert resp.status_code == 403
    admin = as_user("admin")
    resp = admin.post(f"/tasks/{task.id}/complete", data={"decision": "approve"})
    assert resp.status_code == 403
    assert ready_tasks(session, instance.id)[0].id == task.id


def test_auditor_cannot_post_decisions(session, as_user):
    instance = start(session, 10_00)
    [task] = ready_tasks(session, instance.id)
    resp = as_user("auditor").post(f"/tasks/{task.id}/complete", data={"decision": "approve"})
    assert resp.status_code in (302, 403)
    assert ready_tasks(session, instance.id)[0].id == task.id


def test_instance_page_has_diagram_current_task_and_history(session, as_user):
    instance = start(session, 700_00)
    [task] = ready_tasks(session, instance.id)
    as_user("manager").post(f"/tasks/{task.id}/complete", data={"decision": "approve",
                                                                 "comment": "checked"})
    html = as_user("clerk").get(f"/workflow-instances/{instance.id}").get_data(as_text=True)
    assert "bpmn-viewer.production.min.js" in html and 'id="bpmn-canvas"' in html
    assert "Activity_ApproveHoF" in html  # highlighted current element
    assert "checked" in html and "manager" in html and "started" in html


def test_workflows_page_lists_versions_and_refuses_unsafe_upload(session, as_user):
    start(session, 1)
    client = as_user("wfadmin")
    html = client.get("/workflows/").get_data(as_text=True)
    assert "approval_demo" in html and "Download XML" in html and 'name="file"' in html
    bad = demo_xml().replace(b'current_role == "Finance Manager"', b"().__class__")
    resp = client.post("/workflows/upload", data={"file": (io.BytesIO(bad), "x.bpmn")},
                       content_type="multipart/form-data")
    assert resp.status_code == 422
    assert "Flow_ToFM" in resp.get_data(as_text=True)
    clerk = as_user("clerk")
    assert 'name="file"' not in clerk.get("/workflows/").get_data(as_text=True)
    resp = clerk.post("/workflows/upload", data={"file": (io.BytesIO(demo_xml()), "x.bpmn")},
                      content_type="multipart/form-data")
    assert resp.status_code in (302, 403)


def test_download_xml(session, as_user):
    from app.services.workflow import active_definition

    start(session, 1)
    definition = active_definition(session, "approval_demo")
    resp = as_user("auditor").get(f"/workflows/{definition.id}/download")
    assert resp.status_code == 200 and b"approval_demo" in resp.data


