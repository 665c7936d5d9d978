"""GET /api/v1/audit/verify: is the audit hash chain intact?"""

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
        """Verify the audit hash chain
        ---
        get:
          responses:
            200:
              description: Whether the chain is intact and how many events it holds
              content:
                application/json:
                  schema:
                    type: object
                    required: [valid, events]
                    properties:
                      valid: {type: boolean}
                      events: {type: integer}
                      broken_event_id: {type: integer, nullable: true}
                      message: {type: string}
        """
        result = verify_chain(db.session)
        body = {"valid": result.valid, "events": result.events}
        if not result.valid:
            body["broken_event_id"] = result.broken_event_id
            body["message"] = result.message
        return self.response(200, **body)
