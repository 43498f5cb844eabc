#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Roles and tenancy on the control API, end to end with real traffic:
#   - a namespace-scoped user never receives another tenant's flows, events,
#     endpoints, identities, policies or report cells through any endpoint
#     or filter combination (checked exhaustively over the combinations)
#   - unauthenticated requests are refused (unix socket as a non-root user,
#     HTTPS without a token), bad tokens too
#   - writes: a namespace-admin may change NetworkPolicies of its namespaces
#     only, a viewer nothing, platform-admin anything; every attempt lands in
#     the audit log with who, what, when and the result
set -u
[ "$(id -u)" -eq 0 ] || { echo "needs root"; exit 77; }
cd "$(dirname "$0")/../.."
O=${O:-build}
LAB=rol$$
LABT=tests/lab/lab
PROBE=$O/tests/tools/probe
DIR=$(mktemp -d /tmp/moat-roles.XXXXXX)
chmod 0755 "$DIR"   # the socket inside must be reachable by a non-root user
PIN=/sys/fs/bpf/moat/$LAB-n1
SOCK=$DIR/moatd.sock
PORT=$((20000 + $$ % 20000))
pids=()
fails=0

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	"$O"/moatctl uninstall "$PIN" >/dev/null 2>&1
	$LABT down "$LAB" >/dev/null 2>&1
	if [ "$fails" -eq 0 ]; then rm -rf "$DIR"; else echo "logs kept in $DIR"; fi
}
trap cleanup EXIT
command -v openssl >/dev/null || { echo "openssl missing (make setup)"; exit 77; }

$LABT up "$LAB" --nodes 1 >/dev/null || exit 1
for p in tenant-a/web tenant-a/db tenant-b/web tenant-b/db shared/dns; do
	$LABT pod "$LAB" n1 "$p" --label app="${p#*/}" >/dev/null
done
mkdir -p "$DIR/m"
$LABT manifests "$LAB" "$DIR/m" >/dev/null
for t in tenant-a tenant-b; do
	cat > "$DIR/m/$t.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: $t}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
EOF
done
cat > "$DIR/m/cluster.yaml" <<'EOF'
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-cross-tenant}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: tenant-a}}}
  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: tenant-b}}}]}]
EOF
tok() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
T_ALICE=$(tok); T_BOB=$(tok); T_ADMIN=$(tok)
cat > "$DIR/tokens.yaml" <<EOF
tokens:
- {user: alice, role: namespace-admin, namespaces: [tenant-a], tokenSha256: $(printf %s "$T_ALICE" | sha256sum | cut -d' ' -f1)}
- {user: bob, role: viewer, namespaces: [tenant-b], token: $T_BOB}
- {user: root-admin, role: platform-admin, token: $T_ADMIN}
EOF
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=moatd -days 1 -keyout "$DIR/key.pem" \
	-out "$DIR/cert.pem" >/dev/null 2>&1
nsenter --net=/run/netns/$LAB-n1 "$O"/moatd --node "$LAB-n1" --manifests "$DIR/m" --pin-dir "$PIN" \
	--socket "$SOCK" --socket-mode 0666 --tokens "$DIR/tokens.yaml" --audit-log "$DIR/audit.log" \
	--api-port "$PORT" --tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem" >"$DIR/moatd.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do "$O"/moatctl --socket "$SOCK" status >/dev/null 2>&1 && break; sleep 0.1; done

# traffic in both tenants, within and across, allowed and denied
for p in tenant-a/db tenant-b/db shared/dns tenant-a/web tenant-b/web; do
	$PROBE serve --netns "$($LABT get "$LAB" "$p" netnsPath)" --tcp 80,5432 --udp 53 >/dev/null 2>&1 & pids+=($!)
done
sleep 0.3
ip_of() { $LABT get "$LAB" "$1" ip4; }
go() { $PROBE connect --netns "$($LABT get "$LAB" "$1" netnsPath)" --proto "$2" --timeout 0.5 "$(ip_of "$3")" "$4" >/dev/null; }
for _ in 1 2; do
	go tenant-a/web tcp tenant-a/db 5432; go tenant-a/web tcp tenant-a/db 80
	go tenant-b/web tcp tenant-b/db 5432; go tenant-b/web tcp tenant-b/db 80
	go tenant-b/web tcp tenant-a/web 80; go tenant-a/web tcp tenant-b/web 80
	go tenant-a/web udp shared/dns 53; go tenant-b/web udp shared/dns 53
done
sleep 0.5

python3 - "$SOCK" "$PORT" "$DIR" "$T_ALICE" "$T_BOB" "$T_ADMIN" "$(ip_of tenant-a/web)" \
	"$(ip_of tenant-b/web)" "$(ip_of tenant-b/db)" "$(ip_of shared/dns)" "$LAB" <<'PYEOF'
import json, os, subprocess, sys, itertools, time
sock, port, d, ta, tb, tadm, ip_aweb, ip_bweb, ip_bdb, ip_dns, lab = sys.argv[1:]
fails = 0
def check(what, cond, detail=""):
    global fails
    if cond:
        print("ok   " + what)
    else:
        fails += 1
        print("FAIL " + what + (": " + detail if detail else ""))

def req(path, token=None, method="GET", body=None, tls=False, user=None):
    cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--max-time", "10"]
    if tls:
        cmd += ["--cacert", d + "/cert.pem", "--resolve", "moatd:%s:127.0.0.1" % port,
                "https://moatd:%s%s" % (port, path)]
    else:
        cmd += ["--unix-socket", sock, "http://moatd" + path]
    if token:
        cmd += ["-H", "Authorization: Bearer " + token]
    if body is not None:
        cmd += ["--data-binary", "@-"]
    if user:
        cmd = ["setpriv", "--reuid=" + user, "--regid=nogroup", "--clear-groups"] + cmd
    if tls:
        # moatd listens inside the node's network namespace
        cmd = ["nsenter", "--net=/run/netns/%s-n1" % lab] + cmd
    r = subprocess.run(cmd, input=body, capture_output=True, text=True)
    out, _, code = r.stdout.rpartition("\n")
    return int(code or 0), out

# who sees what
users = {"alice": (ta, {"tenant-a"}), "bob": (tb, {"tenant-b"})}
names_of = lambda v: set()
def namespaces_in(obj):
    """every namespace named anywhere in a JSON value"""
    found = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("namespace", "from", "to") and isinstance(v, str) and not v.startswith(("10.", "fd")):
                found.add(v)
            found |= namespaces_in(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= namespaces_in(v)
    return found

filters = ["", "namespace=tenant-a", "namespace=tenant-b", "namespace=shared", "pod=tenant-b/db",
           "pod=db", "ip=" + ip_bdb, "ip=" + ip_aweb, "verdict=deny", "verdict=allow", "port=5432",
           "proto=UDP", "policy=db-from-web", "type=deny", "label=app%3Ddb", "label=app%20in%20(web%2Cdns)",
           "label=!app", "label=app%20notin%20(db)"]
tenant_leaks = 0
checked = 0
for (name, (token, mine)), path in itertools.product(users.items(), ["/v1/flows", "/v1/observe", "/v1/report", "/v1/observe?last=1000"]):
    for f in filters:
        p = path + ("&" if "?" in path else "?") + f if f else path
        code, body = req(p, token)
        checked += 1
        if code != 200:
            if code != 400:
                tenant_leaks += 1
                print("FAIL %s %s: HTTP %d" % (name, p, code))
            continue
        items = [json.loads(l) for l in body.splitlines() if l.strip()] if "observe" in path else json.loads(body)
        if path == "/v1/report":
            cells = items["cells"]
            for c in cells:
                if c["from"] not in mine and c["to"] not in mine:
                    tenant_leaks += 1
                    print("FAIL %s %s: report cell %s->%s" % (name, p, c["from"], c["to"]))
            continue
        for it in items:
            sides = {it["src"].get("namespace"), it["dst"].get("namespace")}
            if not sides & mine:
                tenant_leaks += 1
                print("FAIL %s %s: %s -> %s" % (name, p, it["src"], it["dst"]))
            # the other tenant's policy is never named
            dec = it.get("decided_by") or ""
            for other in ({"tenant-a", "tenant-b"} - mine):
                if "NetworkPolicy %s/" % other in dec:
                    tenant_leaks += 1
                    print("FAIL %s %s: names %s" % (name, p, dec))
for name, (token, mine) in users.items():
    for path in ["/v1/endpoints", "/v1/identities", "/v1/policies", "/v1/status"]:
        code, body = req(path, token)
        checked += 1
        j = json.loads(body)
        ns = namespaces_in(j)
        if not ns <= mine:
            tenant_leaks += 1
            print("FAIL %s %s: shows %s" % (name, path, ns - mine))
    for path in ["/metrics", "/v1/sources"]:
        code, _ = req(path, token)
        checked += 1
        if code != 403:
            tenant_leaks += 1
            print("FAIL %s %s: HTTP %d, expected 403" % (name, path, code))
print("     %d requests checked" % checked)
check("no cross-tenant data through any endpoint or filter", tenant_leaks == 0, "%d leaks" % tenant_leaks)

# the tenants do see their own traffic
code, body = req("/v1/flows", ta)
own = [f for f in json.loads(body) if "tenant-a" in (f["src"].get("namespace"), f["dst"].get("namespace"))]
check("alice sees tenant-a's flows", code == 200 and len(own) >= 2, "%d flows" % len(own))
code, body = req("/v1/flows", tadm)
check("platform-admin sees every tenant", {"tenant-a", "tenant-b"} <= namespaces_in(json.loads(body)))
# label filters select by either side's pod labels (pods here are labelled app=<name>)
code, body = req("/v1/flows?label=app%3Ddb", tadm)
fl = json.loads(body) if code == 200 else []
check("label=app=db: only flows of db pods, some of them",
      code == 200 and fl and all("db" in (f["src"].get("pod"), f["dst"].get("pod")) for f in fl),
      "HTTP %d, %s" % (code, [(f["src"].get("pod"), f["dst"].get("pod")) for f in fl][:5]))
code, body = req("/v1/flows?label=bad%20key%3Dx", tadm)
check("a bad selector is refused with the reason", code == 400 and "label" in body, "HTTP %d %s" % (code, body))
code, body = req("/v1/explain?from=tenant-b/web&to=tenant-b/db&port=5432", ta)
check("alice may not explain tenant-b to tenant-b", code == 403, "HTTP %d" % code)
code, body = req("/v1/explain?from=tenant-b/web&to=tenant-a/web&port=80", ta)
check("alice may explain traffic into her namespace", code == 200 and json.loads(body)["verdict"] == "deny", body[:200])

# unauthenticated
code, _ = req("/v1/status", user="nobody")
check("unix socket, non-root, no token: 401", code == 401, "HTTP %d" % code)
code, _ = req("/v1/status", token="x" * 40, user="nobody")
check("unix socket, bad token: 401", code == 401, "HTTP %d" % code)
code, _ = req("/v1/status", tls=True)
check("HTTPS without a token: 401", code == 401, "HTTP %d" % code)
code, body = req("/v1/whoami", token=tb, tls=True)
check("HTTPS with bob's token: viewer of tenant-b", code == 200 and json.loads(body)["role"] == "viewer", body)
code, _ = req("/v1/status", user="nobody", token=ta)
check("unix socket, non-root with alice's token: 200", code == 200, "HTTP %d" % code)

# writes
np = lambda ns, name: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n" % (name, ns)
code, _ = req("/v1/manifests/alice-a.yaml", ta, "PUT", np("tenant-a", "alice-deny"))
check("alice writes a NetworkPolicy in tenant-a", code == 200, "HTTP %d" % code)
code, _ = req("/v1/manifests/alice-b.yaml", ta, "PUT", np("tenant-b", "alice-deny"))
check("alice may not write into tenant-b", code == 403, "HTTP %d" % code)
code, _ = req("/v1/manifests/alice-c.yaml", ta, "PUT", "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: x}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}\n")
check("alice may not write cluster policies", code == 403, "HTTP %d" % code)
code, _ = req("/v1/manifests/bob.yaml", tb, "PUT", np("tenant-b", "bob-deny"))
check("bob (viewer) may not write", code == 403, "HTTP %d" % code)
code, _ = req("/v1/manifests/bad.yaml", ta, "PUT", np("tenant-a", "x") + "  ingress: [{ports: [{port: 70000}]}]\n")
check("a bad manifest is refused with the field named", code == 400, "HTTP %d" % code)
time.sleep(1)
code, body = req("/v1/explain?from=tenant-b/web&to=tenant-a/db&port=5432", tadm)
code2, body2 = req("/v1/policies", ta)
check("alice's policy is live", any(p["name"] == "alice-deny" for p in json.loads(body2)), body2[:300])
code, _ = req("/v1/manifests/alice-a.yaml", tb, "DELETE")
check("bob may not delete alice's manifest", code == 403, "HTTP %d" % code)
code, _ = req("/v1/manifests/alice-a.yaml", ta, "DELETE")
check("alice deletes her manifest", code == 200, "HTTP %d" % code)

audit = [json.loads(l) for l in open(d + "/audit.log")]
check("audit log: every write attempt, with user and result",
      len(audit) >= 7 and all({"time", "user", "role", "action", "object", "result"} <= set(a) for a in audit)
      and any(a["user"] == "alice" and a["result"] == "written" for a in audit)
      and any(a["user"] == "bob" and a["result"].startswith("refused") for a in audit),
      json.dumps(audit)[:500])
sys.exit(1 if fails else 0)
PYEOF
rc=$?
[ $rc -ne 0 ] && fails=$((fails+1))
echo
[ $fails -eq 0 ] && { echo "roles: all checks passed"; exit 0; }
echo "roles: checks failed"; exit 1
