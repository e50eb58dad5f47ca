"""The catalog site's Jinja templates (``templates/``) and static assets (``static/``).

Package data, loaded with ``jinja2.PackageLoader("heritage.site", "templates")`` and
``importlib.resources.files("heritage.site") / "static"`` (see heritage/publish/build.py),
so they are found the same way in a checkout and in an installed wheel.
"""
