#!/usr/bin/env bash
# Writes report.md and the SVG charts of a bench results dir (bench/run.sh calls it; rerunnable).
#
# Usage: bench/report.sh bench/results/<date>-<host>[-quick]
# Reads meta.txt, micro.csv and results.csv (see bench/README.md); writes report.md, charts/*.dat,
# rps.svg and p99.svg in the same directory.
set -euo pipefail

dir=${1:?usage: bench/report.sh RESULTS_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for f in meta.txt micro.csv results.csv; do
  [[ -s $dir/$f ]] || {
    echo "bench/report.sh: $dir/$f is missing or empty" >&2
    exit 1
  }
done
mkdir -p "$dir/charts"
awk -F, -v meta="$dir/meta.txt" -v micro="$dir/micro.csv" -v results="$dir/results.csv" \
  -v charts="$dir/charts" -f "$here/report.awk" \
  "$dir/meta.txt" "$dir/micro.csv" "$dir/results.csv" >"$dir/report.md.tmp"
mv "$dir/report.md.tmp" "$dir/report.md"

# One bar chart per workload, side by side: column 2 of charts/<workload>.dat is req/s, 3 is p99.
read -r -a workloads <<<"$(sed -n 's/^workloads=//p' "$dir/meta.txt")"
chart() { # OUTPUT COLUMN TITLE YLABEL
  local rows=$(((${#workloads[@]} + 1) / 2)) w
    # An opaque white background: on a dark page (GitHub's dark theme) black text stays readable.
  echo "set terminal svg size 1400,$((rows * 400 + 20)) dynamic noenhanced font 'sans,11' background rgb 'white'"
  echo "set output '$dir/$1'"
  echo "set multiplot layout $rows,2 title '$3'"
  echo "set style fill solid 0.85 border -1"
  echo "set boxwidth 0.7"
  # Unrotated two-line labels ("lbproxy" over the strategy): every SVG renderer places them.
  printf '%s\n' 'lbl(s) = s[1:8] eq "lbproxy-" ? "lbproxy\n" . s[9:] : s'
  echo "set xtics nomirror font 'sans,10'"
  echo "set bmargin 3.5"
  echo "set yrange [0:*]"
  echo "set grid ytics"
  echo "set ylabel '$4'"
  for w in "${workloads[@]}"; do
    [[ -s $dir/charts/$w.dat ]] || continue
    echo "set title '$w'"
    echo "plot '$dir/charts/$w.dat' using 0:$2:(\$0 + 1):xtic(lbl(strcol(1))) with boxes \
lc variable notitle"
  done
  echo "unset multiplot"
}
chart rps.svg 2 "req/s per target (median over rounds; higher is better)" "req/s" | gnuplot
chart p99.svg 3 "p99 latency per target (median over rounds; lower is better)" "ms" | gnuplot
echo "bench: report written: $dir/report.md (charts: rps.svg, p99.svg)"
