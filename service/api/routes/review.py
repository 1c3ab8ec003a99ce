"""The coders' review page: `/review` and its static files, under a strict Content-Security-Policy.

The page is plain HTML, CSS and JavaScript from `service/static/review/`; it signs in with an API
key and talks only to this service's `/v1` API. Its files are served by name from that one folder
(no sub-folders, no other file types), never from a path the request builds.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import FileResponse

router = APIRouter(tags=["review"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parents[2] / "static" / "review"

# Only same-origin scripts, styles and API calls; no inline script or style, no plugins, no
# framing, no native form submission (a form posted without its script would put the key in a
# URL), and DOM sinks such as innerHTML refuse plain strings (Trusted Types, no policy allowed).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidate every time, so a coder never runs yesterday's script against today's API.
    "Cache-Control": "no-cache",
}
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(?:js|css|svg)$")


def _file(name: str, media_type: str) -> FileResponse:
    path = STATIC_DIR / name
    if not path.is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"the review page has no file {name!r}"
            + ("" if STATIC_DIR.is_dir() else f" (its folder {STATIC_DIR} is not installed)"),
        )
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/review")
def review_page() -> FileResponse:
    """The page itself."""
    return _file("index.html", "text/html; charset=utf-8")


@router.get("/review/")
def review_page_slash() -> Response:
    # Relative, so it also works behind a proxy that serves the service under a path prefix.
    return Response(
        status_code=status.HTTP_308_PERMANENT_REDIRECT, headers={"Location": "../review"}
    )


@router.get("/review/{asset}")
def review_asset(asset: str) -> FileResponse:
    """A script, style sheet or icon of the page, by its plain file name."""
    if not _ASSET_NAME.match(asset):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no review page file {asset!r}")
    return _file(asset, _MEDIA_TYPES[Path(asset).suffix])
