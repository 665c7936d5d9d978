"""FAB's data interface of a model, for the pages' ModelViews and the APIs' ModelRestApis."""

from flask_appbuilder.models.sqla.interface import SQLAInterface


def datamodel(model) -> SQLAInterface:
    return SQLAInterface(model)
