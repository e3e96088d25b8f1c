#!/usr/bin/env bash
# Adds Debian's contrib and non-free components to apt's sources (MBROLA is in contrib,
# its voices and SVOX pico in non-free), as a second file beside the Debian one.
set -euo pipefail
dir=/etc/apt/sources.list.d
if [ -f "$dir/debian.sources" ]; then
  out="$dir/speech-tl-contrib-non-free.sources"
  sed -E 's/^Components:.*/Components: contrib non-free/' "$dir/debian.sources" > "$out.tmp"
elif grep -qE '^deb .* main' /etc/apt/sources.list 2>/dev/null; then
  out="$dir/speech-tl-contrib-non-free.list"
  grep -E '^deb ' /etc/apt/sources.list | sed -E 's/ main( .*)?$/ contrib non-free/' > "$out.tmp"
else
  echo "no Debian apt sources found; add 'contrib non-free' components by hand" >&2
  exit 1
fi
mv "$out.tmp" "$out"
echo "apt sources: $out"
