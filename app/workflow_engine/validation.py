"""Deploy-time checks of a BPMN document: safe XML, allowed elements, expressions, operators, lanes."""

from __future__ import annotations

from lxml import etree

from app.workflow_engine import expressions

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}

#: flow elements an IMS workflow may contain (everything else is refused by name)
ALLOWED = {
    "process", "laneSet", "lane", "flowNodeRef", "childLaneSet", "sequenceFlow",
    "conditionExpression", "startEvent", "endEvent", "userTask", "manualTask", "serviceTask",
    "task", "exclusiveGateway", "parallelGateway", "inclusiveGateway", "boundaryEvent",
    "intermediateCatchEvent", "timerEventDefinition", "timeDuration", "timeDate", "timeCycle",
    "incoming", "outgoing", "documentation", "extensionElements", "textAnnotation", "text",
    "association", "terminateEventDefinition",
}
REFUSED_REASONS = {
    "scriptTask": "script tasks are not allowed (use a service task calling a named operator)",
    "callActivity": "call activities are not supported",
    "subProcess": "sub-processes are not supported",
    "businessRuleTask": "business rule tasks are not supported",
    "multiInstanceLoopCharacteristics": "multi-instance loops are not supported",
    "standardLoopCharacteristics": "loops are expressed with gateways, not loop markers",
}
SPIFF_ALLOWED = {"serviceTaskOperator", "parameters", "parameter", "properties", "property",
                 "instructionsForEndUser"}
RESERVED_IDS = {"Start", "End", "Root"}


class Problem(str):
    """One reason a document may not be deployed: the message, and the id of the element it
    concerns (``element``, None for the whole document) so an editor can show it in place."""

    element: str | None

    def __new__(cls, text: str, element: str | None = None):
        obj = super().__new__(cls, text)
        obj.element = element
        return obj


def safe_xml(xml: bytes | str) -> etree._Element:
    """Parse XML without DTDs, entities or network access; raise ValueError on bad input."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise ValueError("DOCTYPE and entity declarations are not allowed.")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True)
    try:
        return etree.fromstring(xml, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"The file is not well-formed XML: {exc}") from None


def _label(el) -> str:
    local = etree.QName(el).localname
    ident = el.get("id")
    name = el.get("name")
    out = f"{local} '{ident}'" if ident else local
    return f"{out} ({name})" if name else out


def _owner(el):
    """The nearest ancestor (or self) with an id, for error messages."""
    while el is not None and (el.get("id") is None
                              or etree.QName(el).localname.endswith("EventDefinition")):
        el = el.getparent()
    return el


def check_document(root, roles: set[str], operators,
                   guarded: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Every reason the document may not be deployed (empty list = safe).

    ``guarded`` maps the ids of processes whose outcome moves money (or changes configuration) to
    the only roles their lanes may name; such a process must also hold at least one user task
    (an approval) in one of those lanes.
    """
    errors: list[str] = []

    def add(el, message: str) -> None:
        if el is None:
            errors.append(Problem(message))
        else:
            errors.append(Problem(f"{_label(el)}: {message}", el.get("id")))

    if etree.QName(root).namespace != BPMN_NS or etree.QName(root).localname != "definitions":
        return ["The document is not BPMN 2.0 (no bpmn:definitions root)."]
    processes = root.findall("bpmn:process", NS)
    executable = [p for p in processes if p.get("isExecutable", "true") != "false"]
    if len(executable) != 1:
        errors.append(f"A workflow file must hold exactly one executable process "
                      f"(found {len(executable)}).")
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        qn = etree.QName(el)
        local, ns = qn.localname, qn.namespace
        ident = el.get("id")
        if ident in RESERVED_IDS:
            add(el, f"the id '{ident}' is reserved; use e.g. '{ident}Event_1'.")
        if ns == SPIFF_NS:
            if local in ("preScript", "postScript"):
                add(_owner(el), f"{local} is a script; scripts are not allowed.")
            elif local not in SPIFF_ALLOWED:
                add(_owner(el), f"extension '{local}' is not allowed.")
            continue
        if ns != BPMN_NS:
            continue
        inside_process = any(etree.QName(a).localname == "process" for a in el.iterancestors()
                             if isinstance(a.tag, str) and etree.QName(a).namespace == BPMN_NS)
        if local in REFUSED_REASONS:
            add(_owner(el), f"{REFUSED_REASONS[local]}.")
        elif inside_process and local not in ALLOWED:
            add(el, f"the element '{local}' is not supported in IMS workflows.")
        if local == "conditionExpression" or local in ("timeDuration", "timeDate", "timeCycle"):
            text = (el.text or "").strip()
            owner_el = _owner(el)
            if not text:
                add(owner_el, f"the {local} is empty.")
            else:
                try:
                    expressions.validate(text)
                except expressions.UnsafeExpression as exc:
                    add(owner_el, f"unsafe {local} '{text}': {exc}")
        if local == "serviceTask":
            op = el.find("bpmn:extensionElements/spiffworkflow:serviceTaskOperator", NS)
            if op is None:
                add(el, "a service task must name an operator "
                              "(spiffworkflow:serviceTaskOperator).")
            else:
                name = op.get("id")
                operator = operators.get(name)
                if operator is None:
                    add(el, f"unknown service operator '{name}' "
                                  f"(known: {', '.join(sorted(operators.operators)) or 'none'}).")
                for param in op.iterfind(".//spiffworkflow:parameter", NS):
                    value = param.get("value", "")
                    try:
                        expressions.validate(value)
                    except expressions.UnsafeExpression as exc:
                        add(el, f"unsafe parameter '{param.get('id')}' "
                                      f"'{value}': {exc}")
                    if operator is not None and operator.params and \
                            param.get("id") not in operator.params:
                        add(el, f"operator '{name}' has no parameter "
                                      f"'{param.get('id')}'.")
        if local == "lane":
            name = (el.get("name") or "").strip()
            if name not in roles:
                add(el, f"lane '{name}' is not a role "
                              f"(roles: {', '.join(sorted(roles))}).")
    for process in executable:
        lanes = {ref.text.strip() for ref in process.iterfind(".//bpmn:lane/bpmn:flowNodeRef", NS)
                 if ref.text}
        for task in process.iterfind(".//bpmn:userTask", NS):
            if task.get("id") not in lanes:
                add(task, "a user task must sit in a lane named after "
                              "the role that completes it.")
        for task in process.iterfind(".//bpmn:manualTask", NS):
            if task.get("id") not in lanes:
                add(task, "a manual task must sit in a lane named after a role.")
        allowed = (guarded or {}).get(process.get("id"))
        if allowed is not None:
            _check_guarded(process, allowed, roles, add)
    return errors


def _check_guarded(process, allowed: tuple[str, ...], roles: set[str], add) -> None:
    """Lanes of a guarded process name only ``allowed`` roles, and it has an approval task.
    (A lane that names no role at all is reported once, by the general lane check.)"""
    process_id = process.get("id")
    approvers = " or ".join(allowed)
    in_allowed_lane = set()
    for lane in process.iterfind(".//bpmn:lane", NS):
        name = (lane.get("name") or "").strip()
        refs = {ref.text.strip() for ref in lane.findall("bpmn:flowNodeRef", NS) if ref.text}
        if name in allowed:
            in_allowed_lane |= refs
        elif name in roles:
            add(lane, f"lane '{name}' may not approve: the lanes of {process_id} may name only "
                      f"{approvers} (four-eyes rule).")
    if not any(task.get("id") in in_allowed_lane
               for task in process.iterfind(".//bpmn:userTask", NS)):
        add(process, f"{process_id} must ask for an approval: it needs at least one user task in "
                     f"a lane of {approvers} (four-eyes rule).")
