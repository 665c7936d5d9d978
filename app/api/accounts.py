"""/api/v1/account-syncs/ (upload a revenues file, dry-run result, apply, change list),
/api/v1/account-holder-profiles/ and /api/v1/account-holder-search/."""

from __future__ import annotations

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import protect

from app.api.base import ImsModelRestApi, domain_errors, page_arguments
from app.domain.errors import DomainError, NotFound, ValidationError
from app.models.accounts import AccountHolderProfile, AccountSync
from app.services.account_uploads import _actor, apply_account_sync, submit_account_file


class AccountSyncApi(BaseApi):
    resource_name = "account-syncs"
    class_permission_name = "AccountSync"
    allow_browser_login = True
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"upload": "write", "result": "read", "list_syncs": "read",
                              "apply": "write", "changes": "read", "discard": "write"}
    openapi_spec_tag = "Account holders"

    @expose("/", methods=["POST"])
    @protect()
    @domain_errors
    def upload(self):
        """Upload an account-holder file: multipart `file`, `profile` (name or id), optional
        `apply=true` to apply it once checked -> 201 {"id", "status"}; poll GET /{pk}
        ---
        post:
          requestBody:
            required: true
            content:
              multipart/form-data:
                schema:
                  type: object
                  required: [file, profile]
                  properties:
                    file: {type: string, format: binary}
                    profile: {type: string}
                    apply: {type: boolean}
          responses:
            201:
              description: Received; the check (dry run) has started
            404: {$ref: '#/components/responses/404'}
            422: {$ref: '#/components/responses/422'}
        """
        apply = (request.form.get("apply") or "").lower() in ("1", "true", "yes")
        sync = submit_account_file(request.files.get("file"), request.form.get("profile"),
                                   apply=apply)
        return self.response(201, id=sync.id, status=sync.status)

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def list_syncs(self):
        """Account-holder syncs, newest first
        ---
        get:
          responses:
            200:
              description: One page of syncs
        """
        from sqlalchemy import select

        from app.extensions import db
        from app.services.accounts import sync_result

        page, size = page_arguments(first=0, default_size=25, max_size=100)
        rows = db.session.scalars(select(AccountSync).order_by(AccountSync.id.desc())
                                  .offset(page * size).limit(size)).all()
        out = []
        for s in rows:
            r = sync_result(s)
            r["bad_line_list"] = r["bad_line_list"][:5]
            r.pop("sample")
            out.append(r)
        return self.response(200, result=out)

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @domain_errors
    def result(self, pk):
        """A sync's progress and dry-run result (counts, sample of changes, bad lines)
        ---
        get:
          responses:
            200:
              description: The sync
            404: {$ref: '#/components/responses/404'}
        """
        from app.extensions import db
        from app.services.accounts import sync_result

        sync = db.session.get(AccountSync, pk)
        if sync is None:
            raise NotFound(f"No account-holder sync {pk}.")
        db.session.refresh(sync)
        return self.response(200, **sync_result(sync))

    @expose("/<int:pk>/apply", methods=["POST"])
    @protect()
    @domain_errors
    def apply(self, pk):
        """Apply a checked sync (one audited change)
        ---
        post:
          responses:
            200:
              description: Applied (or applying; poll GET /{pk})
            404: {$ref: '#/components/responses/404'}
            409: {$ref: '#/components/responses/409'}
        """
        from app.services.accounts import sync_result

        return self.response(200, **sync_result(apply_account_sync(pk)))

    @expose("/<int:pk>/discard", methods=["POST"])
    @protect()
    @domain_errors
    def discard(self, pk):
        """Drop a checked sync without applying it
        ---
        post:
          responses:
            200:
              description: Discarded
            404: {$ref: '#/components/responses/404'}
            409: {$ref: '#/components/responses/409'}
        """
        from app.extensions import db
        from app.services import accounts as svc

        return self.response(200, **svc.sync_result(svc.discard(db.session, pk, actor=_actor())))

    @expose("/<int:pk>/changes", methods=["GET"])
    @protect()
    @domain_errors
    def changes(self, pk):
        """The stored change list of an applied sync (one row per account changed)
        ---
        get:
          parameters:
          - {in: query, name: page, schema: {type: integer, minimum: 0}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 1000}}
          responses:
            200:
              description: One page of changes
            404: {$ref: '#/components/responses/404'}
        """
        from app.extensions import db
        from app.services.accounts import change_list

        if db.session.get(AccountSync, pk) is None:
            raise NotFound(f"No account-holder sync {pk}.")
        page, size = page_arguments(first=0, default_size=100, max_size=1000)
        return self.response(200, result=change_list(db.session, pk, offset=page * size,
                                                     limit=size))


class AccountHolderProfileApi(ImsModelRestApi):
    resource_name = "account-holder-profiles"
    class_permission_name = "AccountHolderProfile"
    datamodel = SQLAInterface(AccountHolderProfile)
    openapi_spec_tag = "Account holders"
    list_columns = ["id", "name", "fund_code", "file_format", "encoding", "delimiter",
                    "has_header", "date_format", "columns", "ignored_columns", "complete",
                    "skip_bad_lines"]
    show_columns = list_columns
    add_columns = list_columns[1:]
    edit_columns = add_columns

    def pre_add(self, item):
        from app.services.accounts import profile_problems

        problems = profile_problems(item)
        if problems:
            raise ValidationError("The profile cannot read files: " + " ".join(problems),
                                  {"columns": problems})

    pre_update = pre_add


class AccountHolderSearchApi(BaseApi):
    resource_name = "account-holder-search"
    class_permission_name = "AccountHolder"
    allow_browser_login = True
    base_permissions = ["can_read"]
    method_permission_name = {"search": "read"}
    openapi_spec_tag = "Account holders"

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def search(self):
        """Search account holders by reference, name, sounds_like, postcode or address
        ---
        get:
          parameters:
          - {in: query, name: q, required: true, schema: {type: string}}
          - {in: query, name: by, schema: {type: string, enum: [reference, name, sounds_like,
             postcode, address]}}
          - {in: query, name: fund, schema: {type: string}}
          responses:
            200:
              description: Up to 50 account holders
            422: {$ref: '#/components/responses/422'}
        """
        from app.extensions import db
        from app.services.accounts.search import account_dict, search_accounts

        rows = search_accounts(db.session, request.args.get("q", ""),
                               request.args.get("by", "name"), fund=request.args.get("fund") or None)
        return self.response(200, result=[account_dict(a) for a in rows])


__all__ = ["AccountHolderProfileApi", "AccountHolderSearchApi", "AccountSyncApi", "DomainError"]


def _bundle_from_request() -> dict:
    from app.services import bundles

    upload = request.files.get("file")
    raw = upload.read() if upload is not None else request.get_data(cache=True)
    if not raw:
        raise ValidationError("Send the bundle (a file, or YAML/JSON as the body).",
                              {"file": ["Required."]})
    return bundles.loads(raw)


class ConfigurationBundleApi(BaseApi):
    resource_name = "configuration-bundle"
    class_permission_name = "ConfigurationBundle"
    allow_browser_login = True
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"export": "read", "diff": "read", "import_": "write"}
    openapi_spec_tag = "Configuration"

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def export(self):
        """This site's configuration as one bundle (?format=yaml|json)
        ---
        get:
          responses:
            200:
              description: The bundle
        """
        from flask import Response

        from app.extensions import db
        from app.services import bundles

        fmt = request.args.get("format", "yaml")
        if fmt not in ("yaml", "json"):
            raise ValidationError("format is yaml or json.", {"format": ["yaml or json"]})
        text = bundles.dumps(bundles.export_bundle(db.session), fmt)
        return Response(text, mimetype="application/json" if fmt == "json" else
                        "application/yaml", headers={
                            "Content-Disposition": f"attachment; filename=ims-config.{fmt}"})

    @expose("/diff", methods=["POST"])
    @protect()
    @domain_errors
    def diff(self):
        """What importing a bundle (multipart `file`, or the body) would change
        ---
        post:
          responses:
            200:
              description: The differences
            422: {$ref: '#/components/responses/422'}
        """
        from app.extensions import db
        from app.services import bundles

        plan = bundles.plan(db.session, _bundle_from_request())
        db.session.rollback()
        return self.response(200, **plan.to_dict(), lines=plan.lines())

    @expose("/import", methods=["POST"])
    @protect()
    @domain_errors
    def import_(self):
        """Import a bundle, all or nothing; approval limits and workflows it changes are proposed
        ---
        post:
          responses:
            200:
              description: Imported
            422: {$ref: '#/components/responses/422'}
        """
        from app.extensions import db
        from app.services import bundles

        plan, made = bundles.import_bundle(db.session, _bundle_from_request(), actor=_actor())
        return self.response(200, **plan.to_dict(), proposals=made)
