"""/api/v1/fund-groups: fund groups and the funds users hold (Administrators write, Auditors
read)."""

from __future__ import annotations

from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect

from app.api.base import domain_errors
from app.api.ledger import json_body
from app.domain.errors import ValidationError
from app.extensions import db
from app.services import fund_groups as FG


def _group_body() -> dict:
    data = json_body()
    funds = data.get("funds", [])
    if not isinstance(funds, list) or not all(isinstance(f, str) for f in funds):
        raise ValidationError("funds is a list of fund codes.", {"funds": ["A list of codes."]})
    if not isinstance(data.get("name"), str):
        raise ValidationError("Give the group a name.", {"name": ["Required."]})
    if data.get("description") is not None and not isinstance(data["description"], str):
        raise ValidationError("description is text.", {"description": ["Text."]})
    return data


class FundGroupApi(BaseApi):
    resource_name = "fund-groups"
    class_permission_name = "FundGroup"
    allow_browser_login = True
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"list_groups": "read", "get": "read", "create": "write",
                              "update": "write", "remove": "write", "users": "read",
                              "get_user": "read", "set_user": "write"}
    openapi_spec_tag = "Fund groups"

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def list_groups(self):
        """Every fund group with its funds and number of users
        ---
        get:
          responses:
            200:
              description: The fund groups
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      result: {type: array, items: {type: object}}
        """
        return self.response(200, result=FG.list_groups(db.session))

    @expose("/", methods=["POST"])
    @protect()
    @domain_errors
    def create(self):
        """Define a fund group
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [name, funds]
                  properties:
                    name: {type: string, minLength: 1, maxLength: 100}
                    description: {type: string, maxLength: 300}
                    funds: {type: array, items: {type: string}}
          responses:
            201:
              description: The group
              content:
                application/json:
                  schema: {type: object}
            409: {$ref: '#/components/responses/409'}
            422: {$ref: '#/components/responses/422'}
        """
        data = _group_body()
        g = FG.save_group(db.session, data["name"], data.get("funds"), data.get("description"))
        return self.response(201, **FG.group_dict(g))

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @domain_errors
    def get(self, pk):
        """One fund group
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200:
              description: The group
              content:
                application/json:
                  schema: {type: object}
            404: {$ref: '#/components/responses/404'}
        """
        return self.response(200, **FG.group_dict(FG.get_group(db.session, pk)))

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @domain_errors
    def update(self, pk):
        """Change a fund group's name, description and funds
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [name, funds]
                  properties:
                    name: {type: string, minLength: 1, maxLength: 100}
                    description: {type: string, maxLength: 300}
                    funds: {type: array, items: {type: string}}
          responses:
            200:
              description: The group
              content:
                application/json:
                  schema: {type: object}
            404: {$ref: '#/components/responses/404'}
            422: {$ref: '#/components/responses/422'}
        """
        data = _group_body()
        FG.get_group(db.session, pk)
        g = FG.save_group(db.session, data["name"], data.get("funds"), data.get("description"),
                          group_id=pk)
        return self.response(200, **FG.group_dict(g))

    @expose("/<int:pk>", methods=["DELETE"])
    @protect()
    @domain_errors
    def remove(self, pk):
        """Delete a fund group (its users lose its funds)
        ---
        delete:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200:
              description: Deleted
              content:
                application/json:
                  schema: {type: object}
            404: {$ref: '#/components/responses/404'}
        """
        FG.delete_group(db.session, pk)
        return self.response(200, message="Deleted.")

    @expose("/users/", methods=["GET"])
    @protect()
    @domain_errors
    def users(self):
        """Every user's funds: all funds, or their groups
        ---
        get:
          responses:
            200:
              description: Users and their funds
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      result: {type: array, items: {type: object}}
        """
        return self.response(200, result=FG.list_user_access(db.session))

    @expose("/users/<int:user_id>", methods=["GET"])
    @protect()
    @domain_errors
    def get_user(self, user_id):
        """One user's funds
        ---
        get:
          parameters:
          - {in: path, name: user_id, required: true, schema: {type: integer}}
          responses:
            200:
              description: The user's funds
              content:
                application/json:
                  schema: {type: object}
            404: {$ref: '#/components/responses/404'}
        """
        return self.response(200, **FG.user_access(db.session, user_id))

    @expose("/users/<int:user_id>", methods=["PUT"])
    @protect()
    @domain_errors
    def set_user(self, user_id):
        """Give a user all funds or not, and exactly the groups listed
        ---
        put:
          parameters:
          - {in: path, name: user_id, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [all_funds, groups]
                  properties:
                    all_funds: {type: boolean}
                    groups: {type: array, items: {type: integer}}
          responses:
            200:
              description: The user's funds
              content:
                application/json:
                  schema: {type: object}
            404: {$ref: '#/components/responses/404'}
            422: {$ref: '#/components/responses/422'}
        """
        data = json_body()
        if not isinstance(data.get("all_funds"), bool):
            raise ValidationError("all_funds is true or false.", {"all_funds": ["true or false"]})
        groups = data.get("groups", [])
        if not isinstance(groups, list) or not all(
                isinstance(g, int) and not isinstance(g, bool) for g in groups):
            raise ValidationError("groups is a list of group ids.", {"groups": ["A list of ids."]})
        return self.response(200, **FG.set_user_access(db.session, user_id,
                                                        all_funds=data["all_funds"],
                                                        group_ids=groups))
