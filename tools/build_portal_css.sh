#!/usr/bin/env sh
# Rebuild the citizen payment portal's assets from GOV.UK Frontend (pinned in tools/portal/package.json):
#   app/static/portal/portal.css            compiled from tools/portal/portal.scss (system font, no crown)
#   app/static/portal/govuk-frontend.min.js GOV.UK Frontend's components (an ES module)
# The output is committed, so `make run` and CI need no Node. Needs Node 18+ and npm.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../app/static/portal"
cd "$here/portal"
npm ci --no-audit --no-fund --ignore-scripts 2>/dev/null || npm install --no-audit --no-fund --ignore-scripts
mkdir -p "$out"
npx sass --no-source-map --style=compressed --quiet-deps --load-path=node_modules portal.scss "$out/portal.css"
cp node_modules/govuk-frontend/dist/govuk/govuk-frontend.min.js "$out/govuk-frontend.min.js"
version=$(node -p "require('govuk-frontend/package.json').version")
printf 'GOV.UK Frontend %s (MIT licence, https://github.com/alphagov/govuk-frontend), built by tools/build_portal_css.sh\n' "$version" > "$out/VERSION"

echo "built $out/portal.css ($(wc -c < "$out/portal.css") bytes) with govuk-frontend $version"
