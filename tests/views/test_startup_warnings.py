"""`make run` starts without FAB's "Filter type not supported for column" warnings: every search
column of every registered view and API has a filter (issue 21 item 12)."""


def test_every_search_column_of_every_view_has_a_filter(app):
    from flask_appbuilder.models.sqla.filters import SQLAFilterConverter

    unsupported = []
    for view in app.appbuilder.baseviews:
        datamodel = getattr(view, "datamodel", None)
        if datamodel is None:
            continue
        for column in getattr(view, "search_columns", None) or ():
            if SQLAFilterConverter(datamodel).convert(column) is None:
                unsupported.append(f"{type(view).__name__}.{column}")
    assert not unsupported, unsupported
