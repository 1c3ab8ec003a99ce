#!/usr/bin/env bash
# Re-vendors the API docs' browser assets into service/static/docs/, so /docs (Swagger UI) and
# /redoc (ReDoc) work on a closed hospital network: the service serves them itself, no CDN.
#   swagger-ui-dist   swagger-ui-bundle.js, swagger-ui.css        Apache-2.0 (LICENSE, NOTICE)
#   redoc             bundles/redoc.standalone.js                 MIT
# Each file's licence travels beside it; VERSIONS.txt records versions and sha256 sums.
# Needs npm and the npm registry. Usage: scripts/vendor-docs-assets.sh [SWAGGER_UI REDOC]
set -euo pipefail
cd "$(dirname "$0")/.."

swagger_ui_version=${1:-5.35.0}
redoc_version=${2:-2.5.4}
target=service/static/docs

command -v npm > /dev/null || { echo "vendor-docs-assets: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$swagger_ui_version" "redoc@$redoc_version" > /dev/null)
mkdir -p "$work/swagger" "$work/redoc"
tar -xzf "$work/swagger-ui-dist-$swagger_ui_version.tgz" -C "$work/swagger"
tar -xzf "$work/redoc-$redoc_version.tgz" -C "$work/redoc"

mkdir -p "$target"
cp "$work/swagger/package/swagger-ui-bundle.js" "$target/swagger-ui-bundle.js"
cp "$work/swagger/package/swagger-ui.css" "$target/swagger-ui.css"
cp "$work/swagger/package/LICENSE" "$target/swagger-ui-LICENSE.txt"
cp "$work/swagger/package/NOTICE" "$target/swagger-ui-NOTICE.txt"
cp "$work/swagger/package/swagger-ui-bundle.js.LICENSE.txt" "$target/swagger-ui-bundle-THIRD-PARTY.txt"
cp "$work/redoc/package/bundles/redoc.standalone.js" "$target/redoc.standalone.js"
cp "$work/redoc/package/LICENSE" "$target/redoc-LICENSE.txt"
cp "$work/redoc/package/bundles/redoc.standalone.js.LICENSE.txt" "$target/redoc-THIRD-PARTY.txt"
# The bundles point at source maps that are not vendored; the browser would ask for them.
sed -i '/^\/\/# sourceMappingURL=/d' "$target/swagger-ui-bundle.js" "$target/redoc.standalone.js"
sed -i 's#/\*\# sourceMappingURL=[^*]*\*/##' "$target/swagger-ui.css"
# ReDoc's footer loads the Redocly logo from Redocly's CDN; an empty SVG keeps the page offline
# (the "API docs by Redocly" credit stays as text).
redoc_logo=https://cdn.redoc.ly/redoc/logo-mini.svg
grep -q "$redoc_logo" "$target/redoc.standalone.js" || { echo "vendor-docs-assets: the ReDoc logo URL moved: update this script" >&2; exit 1; }
sed -i "s#$redoc_logo#data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E#" "$target/redoc.standalone.js"

{
    echo "# Vendored by scripts/vendor-docs-assets.sh from the npm registry; do not edit by hand."
    echo "swagger-ui-dist $swagger_ui_version Apache-2.0"
    echo "redoc $redoc_version MIT"
    echo "patched: source map comments removed; ReDoc's CDN logo replaced by an empty SVG"
    echo
    (cd "$target" && sha256sum swagger-ui-bundle.js swagger-ui.css redoc.standalone.js)
} > "$target/VERSIONS.txt"
echo "vendor-docs-assets: swagger-ui-dist $swagger_ui_version and redoc $redoc_version in $target"
