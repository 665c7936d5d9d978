"""GET /api/v1/audit/verify: is the audit hash chain intact and does it match its checkpoints?"""

from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect

from app.extensions import db
from app.services.audit import verify_chain


class AuditApi(BaseApi):
    resource_name = "audit"
    class_permission_name = "AuditEvent"
    method_permission_name = {"verify": "read"}
    allow_browser_login = True

    @expose("/verify", methods=["GET"])
    @protect()
    def verify(self):
        """Verify the audit hash chain against its signed checkpoints
        ---
        get:
          responses:
            200:
              description: >
                Whether the chain is intact, keyed and matches every checkpoint; what is
                missing or altered when it is not
              content:
                application/json:
                  schema:
                    type: object
                    required: [valid, events]
                    properties:
                      valid: {type: boolean}
                      events: {type: integer}
                      keyed: {type: boolean}
                      key_id: {type: string, nullable: true}
                      checkpoints:
                        type: integer
                        description: checkpoints whose signature holds, compared with the chain
                      linked:
                        type: integer
                        description: events linked into the chain by the worker
                      awaiting:
                        type: integer
                        description: >
                          the newest events, verified by their seals, not linked into the chain
                          yet (the worker links them within seconds)
                      message: {type: string}
                      problems: {type: array, items: {type: string}}
                      broken_event_id:
                        type: integer
                        description: the first event named as missing or altered
        """
        result = verify_chain(db.session)
        body = {"valid": result.valid, "events": result.events, "keyed": result.keyed,
                "key_id": result.key_id, "checkpoints": result.checkpoints,
                "linked": result.linked, "awaiting": result.awaiting, "message": result.message}
        if not result.valid:
            body["problems"] = [str(f) for f in result.findings]
            if result.broken_event_id is not None:
                body["broken_event_id"] = result.broken_event_id
        return self.response(200, **body)
