#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The segmentation report end to end (moatctl report, GET /v1/report):
#   - 2 nodes, 4 namespaces: web/frontend and monitor/prom on n1, api/backend
#     and db/postgres on n2; policies: api takes web on 8080/TCP, db takes
#     api on 5432/TCP (never used), web takes nobody, monitor has none
#   - real traffic: long-lived flows web -> api (TCP 8080) and web -> monitor
#     (UDP 9091) held open while the report is taken (the flow table keeps
#     live flows), denied attempts web -> db, monitor -> web, web -> api:9999
#   - the categories of specific cells in -o json and -o text on n1, and on
#     n2 (per node: n1 dropped web -> db, so n2 never saw it tried)
#   - -o html --out: self-contained (no external resource), rendered in
#     headless Chromium: the pixel colour of every matrix cell in the
#     screenshot is its category's colour (ns-a -> ns-b exactly as the JSON
#     says), the page is not blank, --dump-dom shows what the JS rendered
#     (the flows of a cell "clicked" through #cell-N)
#   - cluster strings are escaped: a fake daemon serving hostile names
# The HTML, screenshots, DOM dumps and text/JSON reports are kept for humans
# in $REPORT_OUT (default build/tests/e2e/report).
# Exit 0 pass, 77 skip (not root, or no Chromium even after apt-get), else fail.
. "$(dirname "$0")/lib.bash"
e2e_need_root

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
	echo "chromium missing: trying apt-get install chromium"
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null 2>&1 ||
		{ apt-get update >/dev/null 2>&1 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null 2>&1; } || true
	CHROMIUM=$(command -v chromium || true)
	[ -n "$CHROMIUM" ] || { echo "SKIP: chromium not available"; exit 77; }
fi

e2e_begin rpt
REPORT_OUT=${REPORT_OUT:-$E2E_BIN/tests/e2e/report}
mkdir -p "$REPORT_OUT"
rm -f "$REPORT_OUT"/*.html "$REPORT_OUT"/*.png "$REPORT_OUT"/*.txt "$REPORT_OUT"/*.json

# ---- moatctl report ------------------------------------------------------------
rpt_sock() { local s=$1; shift; "$MOATCTL" --socket "$s" report "$@"; }
rpt() { local n=$1; shift; rpt_sock "$(sock_of "$n")" "$@"; }

# ---- PNG and DOM checks (Python stdlib only) -----------------------------------
cat >"$E2E_TMP/pagecheck.py" <<'EOF'
"""pagecheck.py cells DOM | pixels DOM PNG EXPECT... | blank PNG | panel DOM

cells:  prints "id from to category box" per matrix cell of a --dump-dom
pixels: every cell's screenshot colour is its data-cat colour; EXPECT
        "from>to=category" pins specific cells; prints one line per check
blank:  the screenshot is not blank (non-white share, colours)
panel:  what the JS rendered: data-js, #panel's cell, category, table rows
"""
import html.parser
import struct
import sys
import zlib

COLOURS = {"allowed-used": (0x2e, 0x9d, 0x4f), "allowed-unused": (0xf2, 0xb6, 0x32),
           "denied-attempted": (0xd9, 0x41, 0x2b), "denied": (0xc9, 0xce, 0xd6)}


def png_read(path):
    """8-bit grey/RGB/grey+alpha/RGBA PNGs, not interlaced: (w, h, rows of RGB tuples)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, w = 8, b"", None
    while pos < len(data):
        ln, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + ln]
        pos += 12 + ln
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, inter = struct.unpack(">IIBBBBB", body)
            if depth != 8 or inter or ctype not in (0, 2, 4, 6):
                raise ValueError("unsupported PNG: depth %d colour type %d interlace %d" % (depth, ctype, inter))
        elif typ == b"IDAT":
            idat += body
        elif typ == b"IEND":
            break
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            elif ft != 0:
                raise ValueError("bad filter type %d in row %d" % (ft, y))
        prev = line
        if bpp >= 3:
            rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        else:
            rows.append([(line[x * bpp],) * 3 for x in range(w)])
    return w, h, rows


class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.panel, self.js, self.rows = [], None, None, 0
        self.in_panel = 0
        self.panel_text = []
        self.tags = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "html":
            self.js = a.get("data-js")
        if tag == "a" and "cell" in (a.get("class") or "").split():
            self.cells.append(a)
        if tag == "section" and a.get("id") == "panel":
            self.panel = a
            self.in_panel = 1
        elif self.in_panel and tag == "section":
            self.in_panel += 1
        if self.in_panel and tag == "tr":
            self.rows += 1

    def handle_endtag(self, tag):
        if self.in_panel and tag == "section":
            self.in_panel -= 1

    def handle_data(self, d):
        if self.in_panel:
            self.panel_text.append(d)


def dom(path):
    d = Dom()
    with open(path, encoding="utf-8") as f:
        d.feed(f.read())
    return d


def near(p, q, tol=10):
    return all(abs(x - y) <= tol for x, y in zip(p, q))


def main(argv):
    cmd = argv[1]
    if cmd == "cells":
        for c in dom(argv[2]).cells:
            print(c.get("id"), c.get("data-from"), c.get("data-to"), c.get("data-cat"), c.get("data-box"))
        return 0
    if cmd == "panel":
        d = dom(argv[2])
        p = d.panel or {}
        print("js=%s cell=%s category=%s rows=%d" % (d.js, p.get("data-cell"), p.get("data-category"), d.rows))
        print("text=" + " ".join(" ".join(d.panel_text).split()))
        print("tags=" + ",".join(sorted(set(d.tags))))
        return 0
    if cmd == "blank":
        w, h, rows = png_read(argv[2])
        nonwhite, colours = 0, set()
        for y in range(0, h, 2):
            for x in range(0, w, 2):
                p = rows[y][x]
                colours.add(tuple(v >> 4 for v in p))
                if min(p) < 240:
                    nonwhite += 1
        share = nonwhite / ((h // 2) * (w // 2))
        ok = share > 0.03 and len(colours) >= 6
        print("%s %dx%d, %.1f%% non-white, %d colours" % ("ok" if ok else "BLANK", w, h, share * 100, len(colours)))
        return 0 if ok else 1
    if cmd == "pixels":
        w, h, rows = png_read(argv[3])
        want = dict(e.split("=", 1) for e in argv[4:])
        bad = 0
        seen = set()
        for c in dom(argv[2]).cells:
            key = "%s>%s" % (c["data-from"], c["data-to"])
            cat = c["data-cat"]
            x, y, cw, ch = (int(v) for v in c["data-box"].split(","))
            # a 5x5 patch inside the corner: clear of the count text in the
            # middle and of the selection outline on the edge
            patch = [rows[yy][xx] for yy in range(y + 7, y + 12) for xx in range(x + 7, x + 12)
                     if 0 <= yy < h and 0 <= xx < w]
            got = patch[0] if patch else None
            good = bool(patch) and cat in COLOURS and all(near(p, COLOURS[cat]) for p in patch)
            if key in want:
                seen.add(key)
                good = good and want[key] == cat
                print("%s %s: category %s (want %s), pixel #%02x%02x%02x" %
                      ("ok" if good else "BAD", key, cat, want[key], *(got or (0, 0, 0))))
            elif not good:
                print("BAD %s: category %s, pixel %s at %d,%d" % (key, cat, got, x + 7, y + 7))
            bad += not good
        for k in set(want) - seen:
            print("BAD %s: no such cell on the page" % k)
            bad += 1
        print("cells checked: %d, wrong: %d" % (len(dom(argv[2]).cells), bad))
        return 1 if bad else 0
    return 64


sys.exit(main(sys.argv))
EOF
count() { grep -c "$@" || true; } # matching lines, 0 without a failing status
pagecheck() { "$PY" "$E2E_TMP/pagecheck.py" "$@"; }
chrome() { # chromium args...: headless, fixed size, no network of its own
	local ud rc=0
	ud=$(mktemp -d "$E2E_TMP/chrome.XXXXXX")
	timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$ud" --force-device-scale-factor=1 --hide-scrollbars --window-size=1200,900 \
		"$@" 2>>"$E2E_TMP/chromium.log" || rc=$?
	rm -rf "$ud"
	return $rc
}

# ---- the lab ---------------------------------------------------------------------
section "lab: web/frontend, monitor/prom on n1; api/backend, db/postgres on n2"
lab up "$LAB" --nodes 2 >/dev/null
lab pod "$LAB" n1 web/frontend --label app=frontend --port 80/TCP >/dev/null
lab pod "$LAB" n1 monitor/prom --label app=prom --port 9090/TCP --port 9091/UDP >/dev/null
lab pod "$LAB" n2 api/backend --label app=backend --port 8080/TCP >/dev/null
lab pod "$LAB" n2 db/postgres --label app=postgres --port 5432/TCP >/dev/null
lab_load
serve web/frontend --tcp 80
serve monitor/prom --tcp 9090
serve db/postgres --tcp 5432
nsenter --net="${NETNS[api/backend]}" "$PY" "$LIBPY" echo-server --proto tcp --port 8080 >/dev/null 2>&1 &
E2E_BG+=($!)
nsenter --net="${NETNS[monitor/prom]}" "$PY" "$LIBPY" echo-server --proto udp --port 9091 >/dev/null 2>&1 &
E2E_BG+=($!)
wait_served 80 web/frontend
wait_served 8080 api/backend
man_cluster
man_put policies.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-web, namespace: api}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: web}}}]
    ports: [{port: 8080, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: db}
spec:
  podSelector: {matchLabels: {app: postgres}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: api}}}]
    ports: [{port: 5432, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-isolated, namespace: web}
spec:
  podSelector: {}
  policyTypes: [Ingress]
EOF
moat_start 1
moat_start 2
sync_or_die
pass "lab, policies and daemons ready"

section "traffic"
# Live flows, held open through the report: the flow table keeps flows
# while they live (a finished TCP flow leaves it).
hold_start() { # name client server proto port
	nsenter --net="${NETNS[$2]}" "$PY" "$LIBPY" hold --proto "$4" --interval 0.3 --timeout 2 \
		"$(addr_of "$3")" "$5" >"$E2E_TMP/hold-$1" 2>&1 &
	E2E_BG+=($!)
}
pongs() { grep -c '^pong' "$E2E_TMP/hold-$1" || true; }
hold_start web-api web/frontend api/backend tcp 8080
hold_start web-mon web/frontend monitor/prom udp 9091
for h in web-api web-mon; do
	for _ in $(seq 100); do [ "$(pongs $h)" -ge 3 ] && break; sleep 0.1; done
	[ "$(pongs $h)" -ge 3 ] && pass "$h flowing" || fail "$h not flowing: $(tail -1 "$E2E_TMP/hold-$h")"
done
probe_matrix "attempts" <<'EOF'
web/frontend db/postgres tcp 5432 timeout
monitor/prom web/frontend tcp 80 timeout
web/frontend api/backend tcp 9999 timeout
web/frontend api/backend tcp 8080 ok
EOF

# cell FROM TO [FIELD]: from the JSON report in $1
cell() { jq -r --arg f "$2" --arg t "$3" --arg k "${4:-category}" \
	'.cells[] | select(.from == $f and .to == $t) | .[$k] | if type == "array" then join(",") else tostring end' "$1"; }

# the events reach moatd's flow table asynchronously: wait for the last one
J1=$REPORT_OUT/report-n1.json
for _ in $(seq 50); do
	rpt 1 -o json >"$J1" || die "moatctl report -o json failed"
	[ "$(cell "$J1" web api denied_attempts)" != 0 ] && [ "$(cell "$J1" monitor web)" = denied-attempted ] &&
		[ "$(cell "$J1" web db)" = denied-attempted ] && break
	sleep 0.2
done

section "-o json on n1 (the node of the clients)"
expect "node" "$(jq -r .node "$J1")" "$LAB-n1"
expect "namespaces" "$(jq -r '.namespaces | sort | join(",")' "$J1")" "api,db,monitor,web"
expect "cells" "$(jq '.cells | length' "$J1")" 16
expect "web -> api (live TCP flow on 8080)" "$(cell "$J1" web api)" allowed-used
expect "web -> api allowed ports" "$(cell "$J1" web api allowed_ports)" "8080/TCP"
expect "web -> api not on any port" "$(cell "$J1" web api all_ports)" false
expect "web -> api denied attempts (9999) counted" "$([ "$(cell "$J1" web api denied_attempts)" -ge 1 ] && echo yes)" yes
expect "web -> monitor (live UDP flow, no policy)" "$(cell "$J1" web monitor)" allowed-used
expect "web -> monitor on any port" "$(cell "$J1" web monitor all_ports)" true
expect "api -> db (allowed, never used)" "$(cell "$J1" api db)" allowed-unused
expect "api -> db allowed ports" "$(cell "$J1" api db allowed_ports)" "5432/TCP"
expect "web -> db (denied, tried)" "$(cell "$J1" web db)" denied-attempted
expect "monitor -> web (denied, tried, same node)" "$(cell "$J1" monitor web)" denied-attempted
expect "monitor -> api (denied, never tried)" "$(cell "$J1" monitor api)" denied
expect "db -> web" "$(cell "$J1" db web)" denied
expect "api -> monitor (no policy, no traffic)" "$(cell "$J1" api monitor)" allowed-unused
expect "web -> db flow names the rule" \
	"$(jq -r '.cells[] | select(.from == "web" and .to == "db") | .flows[0].decided_by' "$J1")" \
	"NetworkPolicy db/db-from-api isolates ingress (no rule allows)"

section "-o json on n2 (the node of the servers): only what n2 judged"
J2=$REPORT_OUT/report-n2.json
for _ in $(seq 50); do
	rpt 2 -o json >"$J2" || die "moatctl report -o json failed on n2"
	[ "$(cell "$J2" web api)" = allowed-used ] && break
	sleep 0.2
done
expect "n2: web -> api (judged again at the backend)" "$(cell "$J2" web api)" allowed-used
expect "n2: web -> db (n1 dropped it: never seen here)" "$(cell "$J2" web db)" denied
expect "n2: api -> db" "$(cell "$J2" api db)" allowed-unused

section "--namespace db"
JN=$REPORT_OUT/report-n1-db.json
rpt 1 --namespace db -o json >"$JN"
expect "cells with db on a side" "$(jq '.cells | length' "$JN")" 7
expect "every cell touches db" "$(jq '[.cells[] | select(.from != "db" and .to != "db")] | length' "$JN")" 0

section "-o text on n1"
T1=$REPORT_OUT/report-n1.txt
rpt 1 -o text >"$T1"
rpt 1 >"$E2E_TMP/default.txt"
expect "text is the default" "$(cmp -s <(grep -v '^Segmentation' "$T1") <(grep -v '^Segmentation' "$E2E_TMP/default.txt") && echo same)" same
row() { awk -v f="$1" -v t="$2" '$1 == f && $2 == t && NF >= 6 { print $3, $4; exit }' "$T1"; }
expect "text row web -> api" "$(row web api)" "allowed-used 8080/TCP"
expect "text row api -> db" "$(row api db)" "allowed-unused 5432/TCP"
expect "text row web -> db" "$(row web db)" "denied-attempted none"
expect "text row monitor -> web" "$(row monitor web)" "denied-attempted none"
expect "text: monitor -> api not in the table" "$(row monitor api)" ""
unused=$(sed -n '/^Allowed but never used/,/^$/p' "$T1")
tried=$(sed -n '/^Denied and attempted/,$p' "$T1")
expect "unused lists api -> db" "$(count '^  api -> db  5432/TCP$' <<<"$unused")" 1
expect "unused names the rule" \
	"$(grep -A1 '^  api -> db ' <<<"$unused" | count 'allowed by: ingress: NetworkPolicy db/db-from-api ingress\[0\]')" 1
expect "attempted lists web -> db with its rule" \
	"$(grep -A1 '^  web -> db ' <<<"$tried" | count 'denied by: NetworkPolicy db/db-from-api isolates ingress')" 1
expect "attempted lists monitor -> web with its rule" \
	"$(grep -A1 '^  monitor -> web ' <<<"$tried" | count 'denied by: NetworkPolicy web/web-isolated isolates ingress')" 1
expect "attempted lists web -> api:9999 (the pair is otherwise allowed)" \
	"$(count '^  web -> api .*other traffic of this pair is allowed' <<<"$tried")" 1
expect "attempted shows the flow" "$(count "web/frontend:[0-9]* -> api/backend:9999 TCP deny" <<<"$tried")" 1

section "-o html --out page.html on n1"
P=$REPORT_OUT/page-n1.html
rpt 1 -o html --out "$P" || fail "moatctl report -o html failed"
expect "written" "$([ -s "$P" ] && echo yes)" yes
expect "no temp file left" "$(find "$REPORT_OUT" -name '*.tmp.*' | wc -l)" 0
expect "self-contained: no external URL" \
	"$(grep -Eo '(https?|ftp)://[^" )]*' "$P" | grep -vxc 'http://www.w3.org/2000/svg' || true)" 0
expect "self-contained: no link/img/iframe/src/@import/url()" \
	"$(grep -Eic '<link|<img|<iframe|<object|<embed| src=|@import|url\(' "$P" || true)" 0
expect "inline SVG and JS" "$(count '<svg id="matrix"' "$P")/$(count '^<script>$' "$P")" "1/1"
expect "a <details> per cell" "$(count '<details id="d' "$P")" 16
rpt 1 --out "$E2E_TMP/guess.html" && expect "--out *.html means -o html" "$(head -c 15 "$E2E_TMP/guess.html")" "<!DOCTYPE html>"

section "headless Chromium: the page as drawn"
chrome --dump-dom "file://$P" >"$REPORT_OUT/dom-n1.html" || fail "chromium --dump-dom failed"
pagecheck cells "$REPORT_OUT/dom-n1.html" >"$E2E_TMP/cells"
expect "matrix cells rendered with their place (data-box from JS)" "$(awk '$5 != "None"' "$E2E_TMP/cells" | wc -l)" 16
K=$(awk '$2 == "web" && $3 == "db" { sub(/^c/, "", $1); print $1 }' "$E2E_TMP/cells")
[ -n "$K" ] || die "no web -> db cell on the page"
PNG=$REPORT_OUT/screenshot-n1.png
chrome --screenshot="$PNG" "file://$P#cell-$K" >/dev/null || fail "chromium --screenshot failed"
expect "screenshot written" "$([ -s "$PNG" ] && echo yes)" yes
out=$(pagecheck blank "$PNG") && pass "not blank: $out" || fail "screenshot: $out"
if pagecheck pixels "$REPORT_OUT/dom-n1.html" "$PNG" "web>db=denied-attempted" "monitor>web=denied-attempted" \
	"web>api=allowed-used" "web>monitor=allowed-used" "api>db=allowed-unused" "monitor>api=denied" \
	>"$E2E_TMP/pixels"; then
	pass "pixel colour of every cell is its category's: $(tail -1 "$E2E_TMP/pixels")"
else
	fail "pixel colours: $(grep -v '^ok' "$E2E_TMP/pixels" | tr '\n' ';')"
fi
sed -n '/^ok/s/^/        /p' "$E2E_TMP/pixels"
chrome --dump-dom "file://$P#cell-$K" >"$REPORT_OUT/dom-n1-clicked.html" || fail "chromium --dump-dom (click) failed"
pagecheck panel "$REPORT_OUT/dom-n1-clicked.html" >"$E2E_TMP/panel"
expect "JS ran, cell web -> db shown in the panel" "$(head -1 "$E2E_TMP/panel" | cut -d' ' -f1-3)" \
	"js=ready cell=$K category=denied-attempted"
expect "panel lists the flow" "$(count 'web/frontend:[0-9]* db/postgres:5432/TCP deny NetworkPolicy db/db-from-api' "$E2E_TMP/panel")" 1
expect "panel table has a header and the flow" "$([ "$(head -1 "$E2E_TMP/panel" | sed 's/.*rows=//')" -ge 2 ] && echo yes)" yes
# without JS: the same page with its script cut out (Chromium's own
# script switch also stops --dump-dom and --screenshot)
NOJS=$REPORT_OUT/page-n1-nojs.html
sed '/^<script>$/,/^<\/script>$/d' "$P" >"$NOJS"
expect "without JS: no script left" "$(count '^<script>$' "$NOJS")" 0
chrome --screenshot="$REPORT_OUT/screenshot-n1-nojs.png" "file://$NOJS" >/dev/null || fail "chromium --screenshot (no JS) failed"
chrome --dump-dom "file://$NOJS" >"$E2E_TMP/dom-nojs.html" || fail "chromium --dump-dom (no JS) failed"
if pagecheck pixels "$REPORT_OUT/dom-n1.html" "$REPORT_OUT/screenshot-n1-nojs.png" "web>db=denied-attempted" \
	"api>db=allowed-unused" >"$E2E_TMP/pixels"; then
	pass "without JS: the matrix is drawn: $(tail -1 "$E2E_TMP/pixels")"
else
	fail "without JS: $(grep -v '^ok' "$E2E_TMP/pixels" | tr '\n' ';')"
fi
pagecheck panel "$E2E_TMP/dom-nojs.html" >"$E2E_TMP/panel"
expect "without JS: the panel keeps its hint" "$(head -1 "$E2E_TMP/panel" | cut -d' ' -f1-2)/$(count 'Click a cell' "$E2E_TMP/panel")" \
	"js=None cell=None/1"
expect "without JS: the web -> db flow is in its <details>" \
	"$(sed -n '/<details id="d'"$K"'"/,/<\/details>/p' "$E2E_TMP/dom-nojs.html" | count '<td>web/frontend:[0-9]*</td><td>db/postgres:5432</td><td>TCP</td><td>deny</td>')" 1
Kapi=$(awk '$2 == "web" && $3 == "api" { sub(/^c/, "", $1); print $1 }' "$E2E_TMP/cells")
chrome --dump-dom "file://$P#cell-$Kapi" >"$E2E_TMP/dom-api.html"
pagecheck panel "$E2E_TMP/dom-api.html" >"$E2E_TMP/panel"
# (ended flows stay listed too: the 8080 probes may show more than once)
expect "panel for web -> api: the live flow and the denied one" \
	"$(grep -o 'api/backend:8080/TCP allow\|api/backend:9999/TCP deny' "$E2E_TMP/panel" | sort -u | tr '\n' ' ')" \
	"api/backend:8080/TCP allow api/backend:9999/TCP deny "

section "escaping: a fake daemon with hostile names"
cat >"$E2E_TMP/fake.py" <<'EOF'
import http.server, json, os, socketserver, sys
E = "\x1b[31m"
H = "<script>alert(1)</script>"
flow = {"first": "2026-01-01T00:00:00.000000Z", "last": "2026-01-01T00:00:01.000000Z", "proto": "TCP",
        "src": {"ip": "10.0.0.1", "port": 1, "namespace": H, "pod": "p\" onmouseover=\"alert(2)", "identity": 5},
        "dst": {"ip": "10.0.0.2", "port": 80, "namespace": "b" + E, "pod": "q'><img src=x onerror=alert(3)>",
                "identity": 6},
        "verdict": "deny", "tier": "networkpolicy", "rule": 9, "decided_by": "</script><script>alert(4)</script>",
        "packets": 0, "bytes": 0, "denied_attempts": 3, "tcp_flags": 2, "ended": False}
rep = {"namespaces": [H, "b" + E], "truncated": False, "scope": "s <i>x</i>", "node": "<b>n</b>",
       "cells": [{"from": H, "to": "b" + E, "category": "denied-attempted", "allowed": False, "all_ports": False,
                  "allowed_ports": [], "flows_used": 0, "denied_attempts": 3, "flows": [flow]},
                 {"from": "b" + E, "to": H, "category": "allowed-unused", "allowed": True, "all_ports": False,
                  "allowed_ports": ["80/TCP<u>"], "flows_used": 0, "denied_attempts": 0, "flows": []}]}
eps = [{"namespace": H, "name": "p", "ips": ["10.0.0.1"], "hostNetwork": False},
       {"namespace": "b" + E, "name": "q", "ips": ["10.0.0.2"], "hostNetwork": False}]
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def address_string(self): return "unix"
    def do_GET(self):
        p = self.path.split("?")[0]
        body = {"/v1/report": rep, "/v1/endpoints": eps,
                "/v1/explain": {"verdict": "allow", "ingress": {"decided_by": "<svg onload=alert(5)>"},
                                "egress": {"decided_by": E + "x"}}}.get(p)
        b = json.dumps(body if body is not None else {"error": "no such endpoint"}).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
if os.path.exists(sys.argv[1]):
    os.unlink(sys.argv[1])
Server(sys.argv[1], Handler).serve_forever()
EOF
FAKE=$E2E_TMP/fake.sock
"$PY" "$E2E_TMP/fake.py" "$FAKE" &
E2E_BG+=($!)
for _ in $(seq 50); do [ -S "$FAKE" ] && break; sleep 0.1; done
FP=$E2E_TMP/hostile.html
rpt_sock "$FAKE" -o html --out "$FP" || fail "report from the fake daemon failed"
expect "only our two <script> elements" "$(grep -oi '<script' "$FP" | wc -l)/$(grep -oi '</script' "$FP" | wc -l)" "2/2"
expect "no injected element" "$(grep -Eic '<img|<svg onload|<i>|<b>n|<u>|onmouseover="alert' "$FP" || true)" 0
expect "names shown escaped" "$([ "$(count '&lt;script&gt;alert(1)&lt;/script&gt;' "$FP")" -ge 1 ] && echo yes)" yes
chrome --dump-dom "file://$FP#cell-0" >"$E2E_TMP/hostile-dom.html" || fail "chromium on the hostile page"
pagecheck panel "$E2E_TMP/hostile-dom.html" >"$E2E_TMP/panel"
expect "hostile page: JS ran and rendered the cell" "$(head -1 "$E2E_TMP/panel" | cut -d' ' -f1-3)" \
	"js=ready cell=0 category=denied-attempted"
expect "hostile page: names as text in the panel" "$(count '<script>alert(1)</script> → b' "$E2E_TMP/panel")" 1
expect "hostile page: no img/i/u element in the DOM" "$(grep -Eo 'tags=.*' "$E2E_TMP/panel" | tr ',' '\n' | grep -cx 'img\|i\|u' || true)" 0
rpt_sock "$FAKE" -o text >"$E2E_TMP/hostile.txt"
expect "text: no control characters" "$(tr -d '\n\t' <"$E2E_TMP/hostile.txt" | LC_ALL=C grep -c '[[:cntrl:]]' || true)" 0

section "errors"
rc=0
rpt_sock "$E2E_TMP/nothing.sock" >/dev/null 2>"$E2E_TMP/err" || rc=$?
expect "no daemon: exit 1" "$rc" 1
expect "no daemon: says so" "$(count 'cannot reach moatd' "$E2E_TMP/err")" 1
rc=0
rpt 1 -o yaml >/dev/null 2>&1 || rc=$?
expect "-o yaml: usage error" "$rc" 2

echo
echo "kept for humans in $REPORT_OUT: $(cd "$REPORT_OUT" && ls | tr '\n' ' ')"
e2e_end
