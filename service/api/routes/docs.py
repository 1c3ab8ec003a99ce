"""The API docs, Swagger UI at `/docs` and ReDoc at `/redoc`, from assets this package ships.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, which a closed hospital network cannot
reach; these load them from `service/static/docs/` (vendored with their licences by
`scripts/vendor-docs-assets.sh`), so the docs never ask anything of another host.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

DOCS_DIR = Path(__file__).resolve().parents[2] / "static" / "docs"
ASSETS_PATH = "/docs-assets"
# Files served by name; nothing else in the folder, and no path the request builds.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-init.js": "text/javascript; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
}
# Same-origin scripts only. Both UIs set inline styles, ReDoc runs a worker from a blob and
# Swagger UI draws data: images, so those are allowed; nothing may load from another host.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"}


def _page(title: str, head: str, body: str) -> HTMLResponse:
    # Asset and spec URLs are relative to the page, so a proxy serving the service under a path
    # prefix keeps working.
    return HTMLResponse(
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<link rel="icon" href="review/icon.svg" type="image/svg+xml">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n",
        headers=_PAGE_HEADERS,
    )


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: try the API from the browser."""
    assets = ASSETS_PATH.lstrip("/")
    return _page(
        f"{request.app.title} - Swagger UI",
        f'<link rel="stylesheet" href="{assets}/swagger-ui.css">\n',
        '<div id="swagger-ui"></div>\n'
        f'<script src="{assets}/swagger-ui-bundle.js"></script>\n'
        f'<script src="{assets}/swagger-init.js"></script>\n',
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc: the API reference on one page."""
    assets = ASSETS_PATH.lstrip("/")
    return _page(
        f"{request.app.title} - ReDoc",
        "",
        # No Google fonts: ReDoc falls back to the system's.
        '<redoc spec-url="openapi.json"></redoc>\n'
        f'<script src="{assets}/redoc.standalone.js"></script>\n',
    )


@router.get(ASSETS_PATH + "/{name}")
def docs_asset(name: str) -> FileResponse:
    """A vendored Swagger UI or ReDoc file, by its plain name."""
    media_type = _ASSETS.get(name)
    path = DOCS_DIR / name
    if media_type is None or not path.is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no docs asset {name!r}"
            + ("" if DOCS_DIR.is_dir() else f" (its folder {DOCS_DIR} is not installed)"),
        )
    return FileResponse(path, media_type=media_type, headers=_ASSET_HEADERS)
