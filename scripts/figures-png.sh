#!/bin/sh
# PNG copies of the report's figures, for reading where SVG is not shown (issue notes,
# some viewers) and for checking them by eye: every results/figures/*.svg to
# results/png/*.png at 1000 px wide. Needs rsvg-convert (Debian: apt-get install librsvg2-bin).
# Run after `mpc-pipe report results/*.csv --out results`: sh scripts/figures-png.sh [FIGDIR [OUTDIR]]
set -e
src=${1:-results/figures}
out=${2:-results/png}
command -v rsvg-convert > /dev/null || { echo "rsvg-convert not found: apt-get install librsvg2-bin" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out"/*.png
for f in "$src"/*.svg; do
    rsvg-convert -w 1000 "$f" -o "$out/$(basename "${f%.svg}").png"
done
