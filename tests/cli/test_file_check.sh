#!/usr/bin/env bash
# tryonctl file check end to end over the upload corpus: every line of
# tests/data/files/manifest.tsv gives the exit code (0 accepted, 1 refused) and the
# error code or the output's type and size; accepted files written with --out must be
# valid images with no metadata left. Plus the usage errors (exit 2) and a missing file.
# usage: test_file_check.sh PATH/TO/tryonctl MANIFEST   (ctest passes both and sets
# TRYON_FILES_CORPUS to the folder the files_corpus fixture generated)
set -uo pipefail
CTL=$1
MANIFEST=$2
: "${TRYON_FILES_CORPUS:?run through ctest, which generates the corpus and sets TRYON_FILES_CORPUS}"
CORPUS=$TRYON_FILES_CORPUS

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$work" || exit 1
unset TRYON_LOG_LEVEL

# What tryonctl derives from a file name; the manifest's declared column must agree,
# or the library test and this one would check different things.
mime_of() {
  case "${1,,}" in
    *.jpg | *.jpeg) echo image/jpeg ;;
    *.png) echo image/png ;;
    *) echo - ;;
  esac
}

while IFS=$'\t' read -r name declared want mime size; do
  case "$name" in '#'* | '') continue ;; esac
  if [ "$(mime_of "$name")" != "$declared" ]; then
    fail "$name" "manifest declares $declared, the name implies $(mime_of "$name")"
    continue
  fi
  out_file="$work/out-$name"
  out=$("$CTL" file check "$CORPUS/$name" --out "$out_file" --thumb-out "$work/thumb-$name" 2>"$work/stderr")
  rc=$?
  if [ "$want" != ok ]; then
    if [ "$rc" -ne 1 ]; then
      fail "$name" "exit $rc, want 1" "$out"
    elif ! grep -Fq "{\"ok\":false,\"error\":{\"code\":\"$want\"," <<<"$out"; then
      fail "$name" "want code $want" "$out"
    elif [ -e "$out_file" ]; then
      fail "$name" "a refused file was written to --out"
    else
      ok "$name refused: $want"
    fi
    continue
  fi
  if [ "$rc" -ne 0 ]; then
    fail "$name" "exit $rc, want 0" "$out$(cat "$work/stderr")"
    continue
  fi
  expect="{\"ok\":true,\"mime\":\"$mime\","
  if [ -n "$size" ] && [ "$size" != - ]; then
    expect+="\"width\":${size%x*},\"height\":${size#*x},"
  fi
  bytes=$(stat -c %s "$out_file" 2>/dev/null || echo missing)
  sha=$(sha256sum "$out_file" 2>/dev/null | cut -d' ' -f1)
  format=$(identify -format '%m %wx%h' "$out_file" 2>/dev/null)
  want_format="$([ "$mime" = image/png ] && echo PNG || echo JPEG)"
  # exiftool lists every tag it finds; a clean file has file-level ones and the JFIF or
  # PNG header, nothing from EXIF, GPS, XMP, ICC, IPTC, or comments.
  meta=$(exiftool -a -G0 -s "$out_file" "$work/thumb-$name" 2>/dev/null |
         grep -E '^\[(EXIF|XMP|ICC_Profile|IPTC|Photoshop|MakerNotes|Composite)\]|Comment|GPS' |
         grep -v '^\[Composite\] *ImageSize\|^\[Composite\] *Megapixels')
  if ! grep -Fq "$expect" <<<"$out"; then
    fail "$name" "output lacks $expect" "$out"
  elif ! grep -Fq "\"bytes\":$bytes,\"sha256\":\"$sha\"}" <<<"$out"; then
    fail "$name" "bytes/sha256 do not describe the --out file" "$out"
  elif [ "${format%% *}" != "$want_format" ] ||
       { [ -n "$size" ] && [ "$size" != - ] && [ "${format#* }" != "$size" ]; }; then
    fail "$name" "identify says '$format', want $want_format $size"
  elif [ -n "$meta" ]; then
    fail "$name" "metadata left in the output" "$meta"
  elif LC_ALL=C grep -aqE 'Exif|<\?php|http://ns\.adobe\.com/xap|TRYON-PADDING' "$out_file"; then
    fail "$name" "a metadata marker or payload is in the output"
  elif ! identify "$work/thumb-$name" >/dev/null 2>&1; then
    fail "$name" "the thumbnail is not a valid image"
  else
    ok "$name accepted: $mime $size"
  fi
done <"$MANIFEST"


check "file check --help"              0 "--thumb-out"              -- "$CTL" file check --help
check "file without a subcommand"      2 "missing subcommand"       -- "$CTL" file
check "file with an unknown subcommand" 2 "unknown subcommand nope" -- "$CTL" file nope
check "file check without a path"      2 "missing PATH"             -- "$CTL" file check
check "file check with two paths"      2 "more than one file"       -- "$CTL" file check a.jpg b.jpg
check "file check unknown flag"        2 "unknown argument --nope"  -- "$CTL" file check a.jpg --nope
check "file check --out without value" 2 "missing file after --out" -- "$CTL" file check a.jpg --out
check "missing file is an io_error"    1 '"code":"io_error"'        -- "$CTL" file check "$work/none.jpg"
check "a folder is an io_error"        1 '"code":"io_error"'        -- "$CTL" file check "$work"
check "unwritable --out is an io_error" 1 '"code":"io_error"'       -- \
  "$CTL" file check "$CORPUS/plain.jpg" --out "$work/no/such/dir/x.jpg"
# shellcheck disable=SC2016  # the single quotes are for the inner bash
check "upper-case extension declares"  0 '"ok":true'                -- \
  bash -c 'cp "$1" "$2" && "$0" file check "$2"' "$CTL" "$CORPUS/plain.jpg" "$work/PLAIN.JPG"
leftovers=$(find "$work" -name '*.tmp.*')
if [ -e "$work/no" ] || [ -n "$leftovers" ]; then
  fail "no temporary files left" "$leftovers"
else
  ok "no temporary files left"
fi

finish
