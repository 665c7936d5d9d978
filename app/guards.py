"""Request guards: input that no handler can store or parse is refused before any handler runs.

- NUL characters. PostgreSQL text cannot hold U+0000 and no IMS field has a use for one, so one
  check of the path, query string, form fields, file names, headers and JSON body covers every
  handler (ours, FAB's, and those still to be written) instead of a check per field. JSON text
  may also hold lone surrogates ("\\udc80"), which no database accepts either.
- JSON integers: every integer any endpoint takes is a record id or a count held in an INTEGER
  column (money travels as text), so a JSON integer outside INTEGER's range is refused before
  it reaches a query that would fail on it (PostgreSQL: "integer out of range").
- JSON bodies are parsed once, up front, by :class:`ImsJSONProvider`, which refuses nesting deeper
  than ``MAX_JSON_DEPTH`` instead of running into Python's recursion limit: a body that does not
  parse is a 400 on every endpoint, whether its handler reads JSON silently (ours) or not (FAB's).
  Every JSON body of the API (API.md) and of our pages is an object; any other is a 422 here
  rather than an AttributeError in a handler that calls ``.get`` on it.
- FAB's CRUD views and model APIs pass some arguments to the database unchecked: the record id in
  their URLs, page and page-size arguments (negative OFFSETs), filter values (ids beyond INTEGER,
  a number compared with LIKE) and the rison ``q`` argument, whose parser fails on some input with
  other errors than its own; and their action routes look an action up by name without checking
  that it exists. These arguments are checked here, for every such view, FAB's own security views
  included, before FAB reads them.

API requests (``/api/``) get API.md's error shape, ``{"message", "errors": {field: [...]}}``: 422
for a value the API cannot accept, 400 for a body or argument that does not parse, 404 for a
record that does not exist. Pages get Flask's plain 400 or 404 page.
"""

from __future__ import annotations

import json
import re
import urllib.parse

from flask import Flask, abort, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask_babel import gettext
from sqlalchemy import BigInteger
from werkzeug.exceptions import HTTPException

from app.domain.ids import MAX_BIGINT, MAX_ID, parse_id

#: JSON bodies nest at most this deep (a receipt is 4 levels: body, lines, line, value).
MAX_JSON_DEPTH = 32
#: The largest page index a list accepts (OFFSET = page x page size must fit a BIGINT).
MAX_PAGE = MAX_ID
#: The largest page size of FAB's list pages (its APIs use FAB_API_MAX_PAGE_SIZE).
MAX_PAGE_SIZE = 1000
#: FAB filter operations that compare text (``LIKE``): their value must be text.
_TEXT_OPERATIONS = frozenset({"sw", "nsw", "ew", "new", "ct", "nct"})
_LIST_OPERATIONS = frozenset({"in", "not_in"})
_RELATION_OPERATIONS = frozenset({"rel_o_m", "nrel_o_m", "rel_m_m"})


class ImsJSONProvider(DefaultJSONProvider):
    """Flask's JSON, strict: JSON nested too deeply is a ValueError (which Flask and Werkzeug turn
    into a 400, or None for ``get_json(silent=True)``), never a RecursionError; NaN and Infinity
    are not numbers (a float that int() cannot convert)."""

    def loads(self, s, **kwargs):
        kwargs.setdefault("parse_constant", _not_json)
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.") from None
        if _nesting_exceeds(value, MAX_JSON_DEPTH):
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
        return value


def _not_json(name: str):
    """NaN and Infinity are Python's extensions, not JSON (RFC 8259)."""
    raise ValueError(f"{name} is not a JSON number.")


def _nesting_exceeds(value, limit: int) -> bool:
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


class Refused(Exception):
    """A request argument that cannot be accepted: ``status`` 400, 404 or 422, the field it is in,
    an API message (English, as all API messages) and a page message (translated)."""

    def __init__(self, status: int, field: str, message: str, page_message: str):
        super().__init__(message)
        self.status, self.field, self.message, self.page_message = status, field, message, page_message


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def install_request_guards(app: Flask, appbuilder) -> None:
    """Register the guards (run before every handler) and the JSON error pages of the API."""
    views = {view.blueprint.name: view for view in appbuilder.baseviews
             if getattr(view, "blueprint", None) is not None}

    @app.before_request
    def refuse_bad_input():
        try:
            _check_nul()
            _check_paging()
            _check_json_body()
            view = views.get(request.blueprint)
            if view is not None:
                _check_fab_arguments(view)
        except Refused as exc:
            if is_api_request():
                return jsonify(message=exc.message, errors={exc.field: [exc.message]}), exc.status
            abort(400 if exc.status == 422 else exc.status, description=exc.page_message)
        return None

    @app.errorhandler(HTTPException)
    def api_http_error(exc: HTTPException):
        """Errors of API routes in the API's shape; pages get the portal's error page
        (app.errors: its layout, a plain message in the reader's language and a way back)."""
        if exc.code is None or exc.code < 400:
            return exc
        if not is_api_request():
            from app.errors import page_for

            return page_for(exc)
        return jsonify(message=exc.description or exc.name, errors={}), exc.code


# -- NUL characters ---------------------------------------------------------------------------

def _nul_refused(field: str) -> Refused:
    return Refused(422, field.replace("\x00", "\\0") or "body",
                   "Text may not contain the NUL character (\\u0000).",
                   gettext("The request contains a NUL character, which no field accepts."))


def _check_nul() -> None:
    if "\x00" in request.path:
        raise _nul_refused("path")
    for name, value in request.headers.items():
        if _has_nul(name, value):
            raise _nul_refused(name)
    for name, value in request.args.items(multi=True):
        if _has_nul(name, value):
            raise _nul_refused(name)
    if request.method in ("POST", "PUT", "PATCH") and request.mimetype in (
            "multipart/form-data", "application/x-www-form-urlencoded") and _body_is_parseable():
        for name, value in request.form.items(multi=True):
            if _has_nul(name, value):
                raise _nul_refused(name or "form")
        for name, storage in request.files.items(multi=True):
            if _has_nul(name, storage.filename):
                raise _nul_refused(name or "file")


def _has_nul(*texts) -> bool:
    """Whether any of the texts holds a NUL (a multipart part may come without a name: None)."""
    return any(t is not None and "\x00" in t for t in texts)


def _check_paging() -> None:
    """``page`` and ``page_size``, wherever a list takes them (our pages and APIs alike), are whole
    numbers a database OFFSET can hold; each list applies its own narrower range after this."""
    for name, high in (("page", MAX_PAGE), ("page_size", MAX_PAGE_SIZE)):
        raw = request.args.get(name, "").strip()
        if raw and not 0 <= _whole(raw) <= high:
            raise _bad_argument(name, f"{name} must be a whole number from 0 to {high}.")


def _whole(text: str) -> int:
    """The whole number ``text`` spells in at most 10 ASCII digits, else -1."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else -1


def _body_is_parseable() -> bool:
    """Forms are read here only up to the size an import may have: a larger upload is refused by
    its handler from the Content-Length alone, without spooling the body."""
    limit = max(current_app.config.get("IMS_IMPORT_MAX_BYTES", 50 * 1024 * 1024),
                current_app.config.get("IMS_ACCOUNT_SYNC_MAX_BYTES", 0)) + 65536
    return request.content_length is not None and request.content_length <= limit


def _check_json_body() -> None:
    if not request.is_json or request.method not in ("POST", "PUT", "PATCH"):
        return
    if not _body_is_parseable() or not request.get_data(cache=True):
        return
    try:
        body = request.get_json()  # cached: the handler's own get_json() reads this result
    except HTTPException:
        try:
            current_app.json.loads(request.get_data(cache=True))
            reason = "The request body is not valid JSON."
        except ValueError as exc:
            reason = f"The request body is not valid JSON: {exc}"
        raise Refused(400, "body", reason,
                      gettext("The request body is not valid JSON.")) from None
    if not isinstance(body, dict):
        raise Refused(422, "body", "Send a JSON object.", gettext("Send a JSON object."))
    stack = [(body, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            _check_json_text(value, path)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, (int, float)) and not -MAX_ID <= value <= MAX_ID:
            raise Refused(422, path or "body",
                          f"A whole number from {-MAX_ID} to {MAX_ID} (the range of the "
                          f"database's INTEGER; money is sent as text).",
                          gettext("A number in the request is too large."))
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path else key
                _check_json_text(key, name)
                stack.append((item, name))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))


def _check_json_text(text: str, path: str) -> None:
    """JSON text (values and keys) holds no NUL and no lone surrogate ("\\ud800" parses, but no
    database or encoder accepts it)."""
    if "\x00" in text:
        raise _nul_refused(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(422, path.encode("utf-8", "replace").decode() or "body",
                      "Text must be valid Unicode (a lone surrogate is not).",
                      gettext("The request contains text that is not valid Unicode.")) from None


# -- FAB views and APIs -----------------------------------------------------------------------

def _check_fab_arguments(view) -> None:
    from flask_appbuilder.api import ModelRestApi
    from flask_appbuilder.baseviews import BaseCRUDView

    if isinstance(view, ModelRestApi):
        _check_record_id(view)
        if request.args.get("q"):
            rison = _parse_rison(request.args["q"])
            if request.endpoint.endswith(".get_list"):
                _check_rison_list(view, rison)
    elif isinstance(view, BaseCRUDView):
        _check_record_id(view)
        _check_list_arguments(view)
        if request.endpoint.endswith(".action"):
            name = request.view_args.get("name")
            _check_action(view, name, single=True)
            _existing(view, request.view_args.get("pk"), view.get_action_permission_name(name))
        elif request.endpoint.endswith(".action_post"):
            _check_action_post(view)


def _not_found() -> Refused:
    return Refused(404, "id", "No such record.", gettext("No such record."))


def _integer_range(column) -> int:
    """The largest value of an integer column (INTEGER or BIGINT on PostgreSQL)."""
    return MAX_BIGINT if isinstance(column.type, BigInteger) else MAX_ID


def _id_maximum(datamodel) -> int | None:
    """The largest id of the model, or None when its key is not one integer column."""
    if datamodel.is_pk_composite():
        return None
    name = datamodel.get_pk_name()
    return _integer_range(datamodel.list_columns[name]) if datamodel.is_integer(name) else None


def _existing(view, raw, permission: str) -> None:
    """Refused (404) unless ``raw`` names a record within the view's base filters. Whether it
    exists is looked up only for a signed-in user holding ``permission`` (what FAB checks next):
    anyone else gets FAB's own answer (401, 403 or the login page) without learning it."""
    maximum = _id_maximum(view.datamodel)
    pk = raw if maximum is None else parse_id(raw, maximum)
    if pk is None:
        raise _not_found()
    if _may(view, permission) and view.datamodel.get(pk, view._base_filters) is None:
        raise _not_found()


def _may(view, permission: str) -> bool:
    """Whether the user is signed in (session or bearer token) and holds ``permission`` on the
    view, as FAB's ``protect``/``has_access`` will decide it."""
    from flask_jwt_extended import verify_jwt_in_request
    from flask_login import current_user

    if not current_user.is_authenticated:
        try:
            if verify_jwt_in_request(optional=True) is None:
                return False
        except Exception:  # an invalid or expired token: FAB's protect answers it
            return False
    return current_app.appbuilder.sm.has_access(permission, view.class_permission_name)


def _route_permission(view, method: str) -> str:
    """The permission FAB checks for the view's route ``method`` (as its ``protect`` and
    ``has_access`` compute it: the method's permission name, renamed by method_permission_name)."""
    name = getattr(getattr(view, method, None), "_permission_name", method)
    return "can_" + ((view.method_permission_name or {}).get(method) or name)


def _check_record_id(view) -> None:
    """``<pk>`` in FAB's show/edit/action/put/delete URLs is a key the model can have, and for a
    change, a record that exists (FAB's user API, for one, edits whatever its lookup returns, None
    included, and an action is called with None)."""
    args = request.view_args or {}
    if "pk" not in args:
        return
    method = request.endpoint.rsplit(".", 1)[-1]
    if request.method == "GET" or method == "action":  # an action is checked with its own name
        if (maximum := _id_maximum(view.datamodel)) is not None and \
                parse_id(args["pk"], maximum) is None:
            raise _not_found()
    else:
        _existing(view, args["pk"], _route_permission(view, method))


def _bad_argument(field: str, message: str) -> Refused:
    return Refused(400, field, message, gettext("The address has an argument that is not valid."))


def _parse_rison(text: str):
    """Parse ``q`` as FAB's ``@rison`` will (rison, then JSON), refusing what FAB would fail on
    with a 500: its parser raises other errors than ParserException for some input."""
    import prison

    try:
        return prison.loads(text)
    except prison.decoder.ParserException:
        if not current_app.config.get("FAB_API_ALLOW_JSON_QS", True):
            raise _bad_argument("q", "Not a valid rison argument.") from None
    except Exception:  # IndexError, RecursionError... on malformed rison
        raise _bad_argument("q", "Not a valid rison argument.") from None
    try:
        return json.loads(urllib.parse.parse_qs(f"q={text}").get("q")[0])
    except Exception:
        raise _bad_argument("q", "Not a valid rison or JSON argument.") from None


def _check_rison_list(view, rison) -> None:
    if not isinstance(rison, dict):
        return  # FAB's schema check refuses it (400)
    page, size = rison.get("page"), rison.get("page_size")
    if page is not None and (type(page) is not int or not 0 <= page <= MAX_PAGE):
        raise _bad_argument("q", f"page must be a whole number from 0 to {MAX_PAGE}.")
    max_size = view.max_page_size or current_app.config.get("FAB_API_MAX_PAGE_SIZE") or 100
    if size is not None and (type(size) is not int or not (1 <= size <= max_size or
                                                             size == max_size == -1)):
        raise _bad_argument("q", f"page_size must be a whole number from 1 to {max_size}.")
    filters = rison.get("filters", [])
    if not isinstance(filters, list):
        return  # FAB's schema check refuses it (400)
    for f in filters:
        if isinstance(f, dict) and {"col", "opr", "value"} <= f.keys():
            _check_filter_value(view.datamodel, str(f["col"]), str(f["opr"]), f["value"])


def _check_filter_value(datamodel, col: str, opr: str, value) -> None:
    """A filter value FAB can compare with the column: text for LIKE, a list only for IN, record
    ids for relations, a bool for a boolean column, integers within the column's range."""
    field = f"filters.{col}"
    if opr in _TEXT_OPERATIONS and not isinstance(value, str):
        raise _bad_argument(field, f"The '{opr}' filter on {col} takes text.")
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and opr not in _LIST_OPERATIONS | {"rel_m_m"}:
        raise _bad_argument(field, f"The '{opr}' filter on {col} takes one value, not a list.")
    if any(isinstance(v, (list, dict)) for v in values):
        raise _bad_argument(field, f"The values of the filter on {col} are single values.")
    if opr in _RELATION_OPERATIONS or datamodel.is_relation(col):
        if any(v != "" and parse_id(v) is None for v in values):
            raise _bad_argument(field, f"The filter on {col} takes record ids.")
    elif datamodel.is_boolean(col):
        if any(not isinstance(v, bool) and v != "y" for v in values):
            raise _bad_argument(field, f"The filter on {col} takes true or false.")
    elif datamodel.is_integer(col):
        limit = _integer_range(datamodel.list_columns[col])
        for v in values:
            try:
                number = int(v)
            except (TypeError, ValueError, OverflowError):
                continue  # FAB compares with NULL: no match
            if not -limit <= number <= limit:
                raise _bad_argument(field, f"The filter on {col} takes whole numbers from "
                                           f"{-limit} to {limit}.")


_FAB_PAGE = re.compile("page_(.*)")
_FAB_PAGE_SIZE = re.compile("psize_(.*)")
_FAB_FILTER = re.compile(r"_flt_(\d)_(.*)")


def _check_list_arguments(view) -> None:
    """The list arguments FAB's list, show and edit pages read (``page_<View>``,
    ``psize_<View>``, ``_flt_<n>_<column>``), as FAB's own regular expressions find them."""
    for arg in request.args:
        if _FAB_PAGE.findall(arg) and not 0 <= _whole(request.args[arg]) <= MAX_PAGE:
            raise _bad_argument(arg, f"{arg} must be a page number from 0 to {MAX_PAGE}.")
        if _FAB_PAGE_SIZE.findall(arg) and not 1 <= _whole(request.args[arg]) <= MAX_PAGE_SIZE:
            raise _bad_argument(arg, f"{arg} must be a page size from 1 to {MAX_PAGE_SIZE}.")
        match = _FAB_FILTER.findall(arg)
        if match and view._filters is not None:
            index, col = int(match[0][0]), match[0][1]
            available = view._filters._all_filters.get(col)
            if available is None:
                continue  # FAB ignores filters on columns it does not know
            if index >= len(available):
                raise _bad_argument(arg, f"There is no filter {index} on {col}.")
            for value in request.args.getlist(arg):
                _check_filter_value(view.datamodel, col, available[index].arg_name, value)


def _unknown_action() -> Refused:
    return Refused(404, "action", "No such action.", gettext("No such action."))


def _check_action(view, name, *, single: bool):
    action = view.actions.get(name) if isinstance(name, str) else None
    if action is None:
        raise _unknown_action()
    if not (action.single if single else action.multiple):
        raise Refused(400, "action", "This action does not apply to the records given.",
                      gettext("This action does not apply to the records given."))
    return action


def _check_action_post(view) -> None:
    name = request.form.get("action")
    _check_action(view, name, single=False)
    rows = request.form.getlist("rowid")
    if not rows:
        raise Refused(400, "rowid", "Select at least one record.",
                      gettext("Select at least one record."))
    for raw in rows:
        _existing(view, raw, view.get_action_permission_name(name))
