#!/usr/bin/env bash
# tests/data/files/generate.sh - builds the upload corpus that manifest.tsv describes.
#
#   tests/data/files/generate.sh [OUT_DIR]     (default: tests/data/files/corpus)
#
# Every file is made here from nothing (ImageMagick, exiftool, the vips tool, printf,
# head, dd, gzip), never committed: ctest runs this as the fixture "files_corpus" into
# the build tree. Inputs are seeded and date chunks left out, so the same machine makes
# the same bytes and the manifest's verdicts always hold. A second run with the same
# script is a no-op (a stamp holds the script's hash).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/corpus}
mkdir -p "$out"
out=$(cd "$out" && pwd)

stamp="$out/.generated"
want=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "corpus up to date in $out"
  exit 0
fi
rm -f "$stamp"

for tool in convert exiftool vips gzip od dd; do
  command -v "$tool" >/dev/null || { echo "generate.sh: $tool is missing" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# ImageMagick options that keep its output free of timestamps and comments of its own.
IM_CLEAN=(-strip -define "png:exclude-chunks=date,time")

# ------------------------------------------------------------------------ byte helpers

# le32 N / le16 N / be32 N: N as raw bytes (printf %b turns the \xNN escapes into bytes).
le16() { printf '%b' "$(printf '\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)))"; }
le32() { le16 $(($1 & 65535)); le16 $((($1 >> 16) & 65535)); }
be32() {
  printf '%b' "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((($1 >> 24) & 255)) $((($1 >> 16) & 255)) \
    $((($1 >> 8) & 255)) $(($1 & 255)))"
}
# crc32 FILE: the CRC-32 (as in PNG and ZIP) of FILE as a number. gzip's trailer holds
# exactly that CRC, little-endian, so no other tool is needed.
crc32() {
  local b
  read -ra b < <(gzip -c <"$1" | tail -c 8 | head -c 4 | od -An -tu1)
  echo $((b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)))
}
# offset_of FILE HEXBYTES: byte offset of the first occurrence (e.g. '\xff\xc0').
offset_of() { grep -obUaP "$2" "$1" | head -n 1 | cut -d: -f1; }
# patch FILE OFFSET ESCAPED: overwrite in place with the bytes of ESCAPED ("\\xNN...").
patch() {
  printf '%b' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# pad_to FILE SIZE: append a recognisable filler (never in a clean output) up to SIZE.
pad_to() {
  local have
  have=$(stat -c %s "$1")
  # yes dies of SIGPIPE when head has enough; that is the expected end, not an error.
  { yes TRYON-PADDING || :; } | head -c $(($2 - have)) >>"$1"
}

# ------------------------------------------------------------------------- good photos

# A 640x480 photo-like picture (seeded fractal noise) is the base of most cases.
convert -seed 1 -size 640x480 plasma:fractal "${IM_CLEAN[@]}" -quality 85 base.jpg
cp base.jpg plain.jpg
cp base.jpg plain_undeclared.bin
convert base.jpg "${IM_CLEAN[@]}" -interlace JPEG -quality 85 progressive.jpg
convert base.jpg "${IM_CLEAN[@]}" -colorspace CMYK -quality 85 cmyk.jpg
# CMYK with its profile embedded (vips's built-in CMYK profile, ~1 MB of ICC data).
vips icc_export base.jpg 'cmyk_icc.jpg[Q=85,strip=false]' --output-profile cmyk
# An RGB photo carrying that CMYK profile: lcms refuses the pair, the profile is ignored.
exiftool -q -b -ICC_Profile cmyk_icc.jpg >cmyk.icc
cp base.jpg icc_mismatch.jpg
exiftool -q -overwrite_original '-ICC_Profile<=cmyk.icc' icc_mismatch.jpg
convert base.jpg "${IM_CLEAN[@]}" -colorspace Gray -quality 85 grey.jpg
convert base.jpg "${IM_CLEAN[@]}" -depth 16 PNG48:rgb16.png
convert base.jpg "${IM_CLEAN[@]}" -alpha set -channel A -fx 'i/w' +channel PNG32:alpha.png
convert base.jpg "${IM_CLEAN[@]}" -colorspace Gray -alpha set -channel A -fx 'j/h' +channel \
  -define png:color-type=4 grey_alpha.png
convert base.jpg "${IM_CLEAN[@]}" -colors 64 PNG8:palette.png
convert base.jpg "${IM_CLEAN[@]}" -interlace PNG PNG24:interlaced.png

# A phone photo lying on its side: pixels stored 640x480, Orientation 6 (rotate 90 CW)
# says show it 480x640; plus GPS, a camera model and XMP that must all go.
cp base.jpg exif_rotated.jpg
exiftool -q -overwrite_original -n -Orientation=6 -Make=TryonCam -Model=Leaky \
  -GPSLatitude=55.7558 -GPSLatitudeRef=N -GPSLongitude=37.6173 -GPSLongitudeRef=E \
  -XMP:Creator=secret-creator exif_rotated.jpg
# An alpha PNG (it stays a PNG) whose eXIf chunk carries GPS and an Artist: both must go.
cp alpha.png alpha_exif.png
exiftool -q -overwrite_original -EXIF:Artist=SecretArtistName -GPSLatitude=55.7558 \
  -GPSLatitudeRef=N -GPSLongitude=37.6173 -GPSLongitudeRef=E alpha_exif.png
# An opaque PNG carrying XMP (iTXt) and text chunks.
convert base.jpg "${IM_CLEAN[@]}" PNG24:xmp.png
exiftool -q -overwrite_original -XMP:Creator=secret-creator -PNG:Comment=GPSInfo xmp.png

# The largest accepted size: 8192 a side, 8192x4880 = 39,976,960 pixels (< 40 M).
convert -seed 7 -size 8192x4880 gradient:'#203040-#e0c080' "${IM_CLEAN[@]}" -quality 85 large.jpg

# Exactly 5 MiB, accepted: a real JPEG followed by filler after its end marker.
cp base.jpg exactly_5mib.jpg
pad_to exactly_5mib.jpg 5242880
cp exactly_5mib.jpg over_5mib.jpg
printf 'X' >>over_5mib.jpg

# JPEG + ZIP polyglot: the JPEG, then a valid stored ZIP (offsets count the JPEG).
printf 'hello from inside the zip\n' >zip_payload
zcrc=$(crc32 zip_payload)
zlen=$(stat -c %s zip_payload)
jlen=$(stat -c %s base.jpg)
{
  cat base.jpg
  printf 'PK\x03\x04\x0a\x00\x00\x00\x00\x00\x00\x00\x21\x00'
  le32 "$zcrc"; le32 "$zlen"; le32 "$zlen"; le16 11; le16 0
  printf 'payload.txt'
  cat zip_payload
  printf 'PK\x01\x02\x0a\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x21\x00'
  le32 "$zcrc"; le32 "$zlen"; le32 "$zlen"; le16 11; le16 0; le16 0; le16 0; le16 0
  le32 0; le32 "$jlen"
  printf 'payload.txt'
  printf 'PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00'
  le32 $((46 + 11)); le32 $((jlen + 30 + 11 + zlen)); le16 0
} >polyglot_zip.jpg

# A PHP web shell in a JPEG comment (COM marker).
# shellcheck disable=SC2016  # the $ is PHP's, not the shell's
convert base.jpg "${IM_CLEAN[@]}" -set comment '<?php system($_GET["c"]); ?>' -quality 85 \
  php_comment.jpg

# --------------------------------------------------------------- other types, renamed

convert base.jpg "${IM_CLEAN[@]}" gif:gif_as.jpg
convert base.jpg "${IM_CLEAN[@]}" webp:webp_as.jpg
convert base.jpg "${IM_CLEAN[@]}" bmp3:bmp_as.png
printf '%s\n' '<?xml version="1.0" encoding="UTF-8"?>' \
  '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">' \
  '<script>alert(1)</script><rect width="64" height="64" fill="red"/></svg>' >svg_as.png
printf '%s\n' '<!DOCTYPE html>' '<html><head><title>hi</title></head>' \
  '<body><script>alert(document.cookie)</script></body></html>' >html_as.jpg
printf '%s\n' '%PDF-1.4' '1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj' \
  '2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj' \
  'trailer << /Root 1 0 R >>' '%%EOF' >pdf_as.jpg
printf 'just some words, no picture\n' >notes.txt

# Each format named as the other: the bytes are fine, the declared type is not.
cp alpha.png png_named.jpg
cp base.jpg jpeg_named.png

# ----------------------------------------------------------------------- broken files

: >empty.jpg
head -c $((jlen / 2)) base.jpg >truncated.jpg
# Cut the same way, then given an end marker: libjpeg only warns about the short scan.
{ head -c $((jlen / 2)) base.jpg; printf '\xff\xd9'; } >truncated_eoi.jpg
convert base.jpg "${IM_CLEAN[@]}" PNG24:base.png
head -c $(($(stat -c %s base.png) / 2)) base.png >truncated.png
# One bit flipped in the IHDR chunk's CRC (bytes 29..32 of every PNG).
cp base.png bad_crc.png
patch bad_crc.png 32 "\\x$(printf '%02x' $(($(od -An -tu1 -j32 -N1 base.png) ^ 1)))"
# JPEG's signature, then deterministic high-entropy bytes.
{
  printf '\xff\xd8\xff\xe0'
  seq 1 3000 | gzip -9n
} >jpeg_magic_garbage.jpg

# ------------------------------------------------- headers claiming too many pixels

# tiny_sof FILE W H: a copy of a tiny JPEG whose frame header claims W x H.
convert -size 16x16 xc:gray "${IM_CLEAN[@]}" -quality 85 tiny.jpg
tiny_sof() {
  local sof
  cp tiny.jpg "$1"
  sof=$(offset_of "$1" '\xff\xc0')
  patch "$1" $((sof + 5)) "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($3 >> 8)) $(($3 & 255)) \
    $(($2 >> 8)) $(($2 & 255)))"
}
tiny_sof bomb_9000.jpg 9000 9000    # 81 megapixels
tiny_sof side_8193.jpg 8193 16      # one pixel over the side limit
tiny_sof pixels_over.jpg 6400 6400  # 40.96 M pixels, sides fine

# A PNG claiming 20000x20000 (IHDR rewritten with a correct CRC), tiny IDAT.
convert -size 1x1 xc:gray "${IM_CLEAN[@]}" -define png:color-type=0 -depth 8 tiny.png
{
  printf 'IHDR'
  be32 20000; be32 20000
  printf '\x08\x00\x00\x00\x00'
} >ihdr
{
  head -c 8 tiny.png
  be32 13
  cat ihdr
  be32 "$(crc32 ihdr)"
  tail -c +34 tiny.png
} >bomb_20000.png

# ---------------------------------------------------------------------------- publish

rm -f base.jpg base.png tiny.jpg tiny.png ihdr zip_payload cmyk.icc
mv ./* "$out"/
printf '%s\n' "$want" >"$stamp"
echo "corpus: $(find "$out" -maxdepth 1 -type f ! -name ".*" | wc -l) files in $out"
