#!/usr/bin/env bash
# Copy the npm-installed front-end files into the web app's static folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/../src/clm/web/static/vendor"
mkdir -p "$dest"
cp "$here/node_modules/htmx.org/dist/htmx.min.js" "$dest/htmx.min.js"
cp "$here/node_modules/chart.js/dist/chart.umd.min.js" "$dest/chart.umd.min.js"
cp "$here/node_modules/@picocss/pico/css/pico.min.css" "$dest/pico.min.css"
