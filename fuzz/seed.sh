#!/usr/bin/env bash
# Regenerates the seed corpora under fuzz/corpus/ (git-ignored) from the real fixtures.
#
# demux seeds are "<chunking byte><TS bytes>" (see fuzz_targets/demux.rs): for each of the
# 360p/240p/144p fixtures, the first 64 KiB and a 64 KiB slice from the middle (on a packet
# boundary), each once fed in a single push (0x00) and once in 143-byte pushes (0x8f), so
# packets straddle push boundaries.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fixtures="$here/../origin/fixtures"
corpus="$here/corpus"
slice=65536

mkdir -p "$corpus/demux" "$corpus/hls_path" "$corpus/sps" "$corpus/media_playlist"

for name in 360p 240p 144p; do
    ts="$fixtures/$name.ts"
    size=$(stat -c %s "$ts")
    mid=$(( (size / 2 - slice / 2) / 188 * 188 ))
    for part in head mid; do
        if [ "$part" = head ]; then skip=0; else skip=$mid; fi
        for mode in 00 8f; do
            out="$corpus/demux/$name-$part-$mode"
            {
                printf "\\x$mode"
                dd if="$ts" bs=4096 iflag=skip_bytes,count_bytes skip="$skip" count="$slice" status=none
            } >"$out"
        done
    done
done

# hls_path: one of each object kind plus a few near misses.
i=0
for p in \
    /live/demo/master.m3u8 \
    /live/demo/360p/index.m3u8 \
    /live/demo/360p/123.ts \
    /live/demo/360p/123.4.ts \
    /live/a_b-C/x/0.0.ts \
    /live/demo/360p/18446744073709551615.ts \
    /live/demo/360p/00.ts \
    /live/demo/../x.ts \
    /live/%41/master.m3u8 \
    /metrics; do
    printf '%s' "$p" >"$corpus/hls_path/seed-$i"
    i=$((i + 1))
done

# sps: the SPS NAL units (header byte first) the fixtures carry (x264, main profile).
printf '%s' 674d401eeca05017fcb808800000030080000019078b16cb | xxd -r -p >"$corpus/sps/360p"
printf '%s' 674d4015eca0d8ff27ff8140013f880000030008000003019078b16cb0 | xxd -r -p >"$corpus/sps/240p"
printf '%s' 674d400ceca0809d80880000030008000003019078a14cb0 | xxd -r -p >"$corpus/sps/144p"

# media_playlist: a live window as the origin writes it, a VOD with ENDLIST and a
# discontinuity, a third-party style one (CRLF, titles, absolute URIs, offset PDT, unknown
# tags), and a minimal one without PDT.
mp="$corpus/media_playlist"
printf '%s\n' '#EXTM3U' '#EXT-X-VERSION:3' '#EXT-X-TARGETDURATION:2' '#EXT-X-MEDIA-SEQUENCE:1042' \
    '#EXT-X-DISCONTINUITY-SEQUENCE:0' '#EXT-X-INDEPENDENT-SEGMENTS' \
    '#EXT-X-PROGRAM-DATE-TIME:2026-11-23T16:57:30.000Z' '#EXTINF:2.000,' '1042.ts' \
    '#EXT-X-PROGRAM-DATE-TIME:2026-11-23T16:57:32.000Z' '#EXTINF:2.000,' '1043.ts' \
    '#EXT-X-PROGRAM-DATE-TIME:2026-11-23T16:57:34.000Z' '#EXTINF:2.000,' '1044.ts' >"$mp/live"
printf '%s\n' '#EXTM3U' '#EXT-X-VERSION:3' '#EXT-X-TARGETDURATION:2' '#EXT-X-MEDIA-SEQUENCE:0' \
    '#EXT-X-DISCONTINUITY-SEQUENCE:3' \
    '#EXT-X-PROGRAM-DATE-TIME:2026-11-23T16:57:30.000Z' '#EXTINF:2.000,' '0.ts' \
    '#EXT-X-PROGRAM-DATE-TIME:2026-11-23T16:57:32.000Z' '#EXTINF:1.920,' '1.ts' \
    '#EXT-X-DISCONTINUITY' \
    '#EXT-X-PROGRAM-DATE-TIME:2026-11-23T17:03:10.500Z' '#EXTINF:2.000,' '2.ts' \
    '#EXT-X-PROGRAM-DATE-TIME:2026-11-23T17:03:12.500Z' '#EXTINF:0.480,' '3.ts' \
    '#EXT-X-ENDLIST' >"$mp/vod-discontinuity"
printf '%s\r\n' '#EXTM3U' '#EXT-X-VERSION:6' '#EXT-X-TARGETDURATION:6' '#EXT-X-MEDIA-SEQUENCE:18446744073709551610' \
    '#EXT-X-PLAYLIST-TYPE:EVENT' '#EXT-X-PROGRAM-DATE-TIME:2026-11-23T17:57:30.25+01:00' \
    '#EXTINF:5.005,Intro' 'https://cdn.example.com/live/360p/a.ts?token=x' '' \
    '#EXT-X-KEY:METHOD=NONE' '#EXTINF:6,' '/live/360p/b.ts' \
    '#EXT-X-DISCONTINUITY' '#EXT-X-PROGRAM-DATE-TIME:2026-11-23 17:00:00Z' '#EXTINF:4.5,ad break' 'ad/c.ts' >"$mp/crlf-titles"
printf '%s\n' '#EXTM3U' '#EXT-X-TARGETDURATION:10' '#EXTINF:9.009,' 'seg0.ts' '#EXTINF:9.009,' 'seg1.ts' \
    '#EXT-X-ENDLIST' >"$mp/minimal"

echo "seeded: $(ls "$corpus/demux" | wc -l) demux, $(ls "$corpus/hls_path" | wc -l) hls_path, $(ls "$corpus/sps" | wc -l) sps, $(ls "$corpus/media_playlist" | wc -l) media_playlist"
