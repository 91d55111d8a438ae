"""The API's pages for people: Swagger UI at ``/docs``, ReDoc at ``/redoc``.

Their scripts and styles ship in the ``fastapi-offline`` package (a dependency
of the ``server`` extra) and are served from it at ``/docs/static``: the pages
fetch nothing from another host, so they work on a machine without internet
and tell no CDN who reads them. On ``/docs``, "Authorize" takes an API key
(the document declares bearer keys), and "Try it out" then calls this service.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

__all__ = ["STATIC", "install"]

#: where the pages' assets are served
STATIC = "/docs/static"
#: Swagger UI would ask swagger.io to validate the document: never
_SWAGGER = {"validatorUrl": None, "tryItOutEnabled": True}


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets (the app has FastAPI's own turned off)."""
    assert app.openapi_url is not None
    spec = app.openapi_url
    title = f"{app.title} API"
    app.mount(STATIC, StaticFiles(directory=str(files("fastapi_offline") / "static")), "docs")

    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + spec,
            title=title,
            swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC}/favicon.png",
            swagger_ui_parameters=_SWAGGER,
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + spec,
            title=title,
            redoc_js_url=f"{root}{STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
