#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A fake Kubernetes API server for moat's tests (hostd/k8s.c).

It speaks the list/watch protocol the way kube-apiserver does: paginated
LISTs (limit/continue, items without kind/apiVersion, a consistent snapshot
per continue chain), chunked WATCH streams of newline-separated events
(ADDED/MODIFIED/DELETED/BOOKMARK/ERROR) resuming from a resourceVersion,
"410 Gone" for a compacted resourceVersion (as an ERROR event, as
kube-apiserver does, or as an HTTP status), Status bodies for errors, bearer
tokens and client certificates.  Faults are injected through a control port
(plain HTTP on 127.0.0.1): dropped connections (between events or inside
one), garbage and malformed lines, hanging streams, forced statuses (403,
404, 500), expired continue tokens, the whole server going away and coming
back on the same port.

  fakeapi.py gen-certs DIR
      ca.crt/ca.key, server.crt/server.key (127.0.0.1, ::1, localhost),
      client.crt/client.key (CN=moat-test), other-ca.crt (an unrelated CA);
      with the openssl command.
  fakeapi.py serve [--certs DIR | --http] [--token T]... [--port-file F]
                   [--conformance DIR] [--exit-on-stdin-eof]
      prints "READY API_PORT CONTROL_PORT" on stdout.

Control (POST JSON unless said; answers JSON):
  /put      {"object": {...}} or {"objects": [...]}  create or replace
  /delete   {"kind", "namespace"?, "name"}
  /compact  {}                       every resourceVersion older than the
                                     current one is too old (watch: 410)
  /fault    {"resource": "pods", "fault": F, ...}   one-shot, next watch of
            that resource (or the active one: "drop"):
            drop (between events) | cut (inside an event) | garbage |
            malformed | notevent | hang | gone_http | gone_event |
            split (send each event in 7-byte chunks) | list_hang (next list)
            | expire_continue (next continue request gets 410)
            | fail_continue (next continue request gets 500)
  /drop     {"resource"?}            cut active watches now
  /set      {"bookmark_interval": s, "tokens": [...], "status": {"pods": 403},
             "gone_mode": "event"|"http", "watch_cap": s, "resources": {...}}
  /down, /up                         close / reopen the API listener
  GET /requests  the request log;  POST /requests/clear
  GET /state     {"rv", "objects": {resource: [keys]}, "watches": {resource: n}}
"""
import base64
import copy
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESOURCES = {
    # resource: (kind, group, version, namespaced)
    "namespaces": ("Namespace", "", "v1", False),
    "pods": ("Pod", "", "v1", True),
    "nodes": ("Node", "", "v1", False),
    "services": ("Service", "", "v1", True),
    "networkpolicies": ("NetworkPolicy", "networking.k8s.io", "v1", True),
    "adminnetworkpolicies": ("AdminNetworkPolicy", "policy.networking.k8s.io", "v1alpha1", False),
    "baselineadminnetworkpolicies": ("BaselineAdminNetworkPolicy", "policy.networking.k8s.io",
                                     "v1alpha1", False),
    "clusternetworkpolicies": ("ClusterNetworkPolicy", "policy.networking.k8s.io", "v1alpha2",
                               False),
    # moat.io blueprints: not installed unless /set resources adds them
}


def api_version(group, version):
    return f"{group}/{version}" if group else version


def status_body(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Resource:
    def __init__(self, name, kind, group, version, namespaced):
        self.name, self.kind, self.group, self.version = name, kind, group, version
        self.namespaced = namespaced
        self.objects = {}      # (ns, name) -> object
        self.events = []       # (rv, type, object)
        self.watchers = set()
        self.faults = []
        self.status = None     # forced HTTP status

    def path(self):
        if self.group:
            return f"/apis/{self.group}/{self.version}/{self.name}"
        return f"/api/{self.version}/{self.name}"


class State:
    def __init__(self):
        self.cv = threading.Condition()
        self.rv = 100
        self.compacted = 0
        self.gone_mode = "event"
        self.bookmark_interval = 0.0
        self.watch_cap = 1800
        self.tokens = set()
        self.continues = {}
        self.requests = []
        self.wmap = {}         # id -> (resource, watch flags)
        self.resources = {}
        for r, (k, g, v, n) in RESOURCES.items():
            self.add_resource(r, k, g, v, n)

    def add_resource(self, r, k, g, v, n):
        res = Resource(r, k, g, v, n)
        self.resources[res.path()] = res
        return res

    def by_kind(self, kind):
        for res in self.resources.values():
            if res.kind == kind:
                return res
        return None

    def by_name(self, name):
        for res in self.resources.values():
            if res.name == name:
                return res
        return None

    def put(self, obj):
        res = self.by_kind(obj.get("kind"))
        if res is None:
            raise ValueError(f"no resource for kind {obj.get('kind')}")
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = api_version(res.group, res.version)
        md = obj.setdefault("metadata", {})
        if res.namespaced:
            md.setdefault("namespace", "default")
        else:
            md.pop("namespace", None)
        key = (md.get("namespace", ""), md["name"])
        self.rv += 1
        md["resourceVersion"] = str(self.rv)
        old = res.objects.get(key)
        if old is None:
            md["uid"] = f"uid-{self.rv}"
            md["creationTimestamp"] = "2025-01-01T00:00:00Z"
        else:
            md["uid"] = old["metadata"].get("uid")
            md["creationTimestamp"] = old["metadata"].get("creationTimestamp")
        res.objects[key] = obj
        res.events.append((self.rv, "MODIFIED" if old else "ADDED", obj))
        self.cv.notify_all()
        return self.rv

    def delete(self, kind, ns, name):
        res = self.by_kind(kind)
        key = (ns or "", name)
        if res is None or key not in res.objects:
            return None
        obj = copy.deepcopy(res.objects.pop(key))
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        res.events.append((self.rv, "DELETED", obj))
        self.cv.notify_all()
        return self.rv


S = State()
API = {"server": None, "thread": None, "port": 0, "ctx": None, "conns": set()}
CONNS_LOCK = threading.Lock()


def key_of(obj):
    md = obj["metadata"]
    return (md.get("namespace", ""), md["name"])


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        with CONNS_LOCK:
            API["conns"].add(self.connection)

    def finish(self):
        with CONNS_LOCK:
            API["conns"].discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def auth(self):
        cert = None
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                cert = self.connection.getpeercert()
            except (ValueError, OSError):
                cert = None
        h = self.headers.get("Authorization", "")
        tok = h[7:] if h.startswith("Bearer ") else None
        kind = "cert" if cert else ("token" if tok else "none")
        with S.cv:
            ok = not S.tokens or bool(cert) or (tok in S.tokens)
        return kind, tok, ok

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        akind, tok, ok = self.auth()
        entry = {"path": u.path, "query": q, "auth": akind, "token": tok,
                 "time": time.time()}
        with S.cv:
            S.requests.append(entry)
            res = S.resources.get(u.path)
            forced = res.status if res else None
        if not ok:
            entry["status"] = 401
            return self.send_json(401, status_body(401, "Unauthorized", "Unauthorized"))
        if res is None:
            entry["status"] = 404
            return self.send_json(404, status_body(404, "NotFound",
                                                   "the server could not find the requested resource"))
        if forced:
            entry["status"] = forced
            if forced == 403:
                verb = "watch" if q.get("watch") in ("1", "true") else "list"
                msg = (f'{res.name}{"." + res.group if res.group else ""} is forbidden: User '
                       f'"system:serviceaccount:moat-system:moatd" cannot {verb} resource '
                       f'"{res.name}" in API group "{res.group}" at the cluster scope')
                return self.send_json(403, status_body(403, "Forbidden", msg))
            if forced == 404:
                return self.send_json(404, status_body(404, "NotFound",
                                                       "the server could not find the requested resource"))
            if forced == 429:
                self.send_response(429)
                data = json.dumps(status_body(429, "TooManyRequests", "slow down")).encode()
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            return self.send_json(forced, status_body(forced, "InternalError", "injected"))
        entry["status"] = 200
        if q.get("watch") in ("1", "true"):
            return self.watch(res, q, entry)
        return self.list(res, q, entry)

    def list(self, res, q, entry):
        limit = int(q.get("limit", "0") or 0)
        cont = q.get("continue")
        with S.cv:
            fault = None
            for f in list(res.faults):
                if f["fault"] in ("list_hang", "expire_continue", "fail_continue"):
                    if f["fault"] != "list_hang" and not cont:
                        continue
                    res.faults.remove(f)
                    fault = f["fault"]
                    break
            if fault == "fail_continue":
                entry["status"] = 500
                return self.send_json(500, status_body(500, "InternalError", "injected"))
            if fault == "expire_continue":
                entry["status"] = 410
                return self.send_json(410, status_body(
                    410, "Expired", "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without the continue "
                    "parameter."))
            if cont:
                snap = S.continues.get(cont)
                if snap is None:
                    entry["status"] = 400
                    return self.send_json(400, status_body(400, "BadRequest", "bad continue"))
                items, rv, off = snap
            else:
                items = [copy.deepcopy(res.objects[k]) for k in sorted(res.objects)]
                for it in items:
                    it.pop("kind", None)
                    it.pop("apiVersion", None)
                rv, off = S.rv, 0
        if fault == "list_hang":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.flush()
            self.hang(res)
            return
        end = off + limit if limit > 0 else len(items)
        page = items[off:end]
        md = {"resourceVersion": str(rv)}
        if end < len(items):
            tok = base64.urlsafe_b64encode(os.urandom(12)).decode() + "=="
            with S.cv:
                S.continues[tok] = (items, rv, end)
            md["continue"] = tok
            md["remainingItemCount"] = len(items) - end
        self.send_json(200, {"kind": res.kind + "List",
                             "apiVersion": api_version(res.group, res.version),
                             "metadata": md, "items": page})

    def hang(self, res):
        # hold the connection, sending nothing, until cut or 120 s
        deadline = time.time() + 120
        w = {"drop": False, "cut": False}
        with S.cv:
            S.wmap[id(w)] = (res, w)
            while (not w["drop"] and not w["cut"] and time.time() < deadline and
                   API["server"] is not None):
                S.cv.wait(0.5)
            S.wmap.pop(id(w), None)
        self.close_connection = True

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, res, q, entry):
        try:
            start = int(q.get("resourceVersion") or 0)
        except ValueError:
            return self.send_json(400, status_body(400, "BadRequest", "bad resourceVersion"))
        timeout = min(int(q.get("timeoutSeconds") or 1800), S.watch_cap)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        with S.cv:
            fault = None
            for f in res.faults:
                if f["fault"] not in ("list_hang", "expire_continue", "fail_continue"):
                    res.faults.remove(f)
                    fault = f["fault"]
                    break
            too_old = start and start < S.compacted
            gone_mode = S.gone_mode
            if start == 0:
                start = S.rv
        if fault == "gone_http" or (too_old and gone_mode == "http"):
            entry["status"] = 410
            return self.send_json(410, status_body(410, "Expired",
                                                   f"too old resource version: {start} ({S.compacted})"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        if fault == "gone_event" or too_old:
            ev = {"type": "ERROR", "object": status_body(
                410, "Expired", f"too old resource version: {start} ({S.compacted})")}
            self.chunk(json.dumps(ev).encode() + b"\n")
            self.chunk(b"")
            return
        if fault == "hang":
            return self.hang(res)
        if fault == "garbage":
            self.chunk(b"<html>this is not json</html>\n")
        if fault == "malformed":
            self.chunk(b'{"type":"ADDED","object":{"kind":"Pod",\n')
        if fault == "notevent":
            self.chunk(b'{"hello":"world"}\n')
        w = {"drop": False, "cut": False}
        deadline = time.time() + timeout
        last_bm = time.time()
        sent = start
        with S.cv:
            res.watchers.add(id(w))
            S.wmap[id(w)] = (res, w)
        try:
            while True:
                with S.cv:
                    while True:
                        pend = [e for e in res.events if e[0] > sent]
                        now = time.time()
                        bm_due = (bookmarks and S.bookmark_interval > 0 and
                                  now - last_bm >= S.bookmark_interval)
                        if (pend or bm_due or w["drop"] or w["cut"] or now >= deadline or
                                API["server"] is None):
                            break
                        wait = deadline - now
                        if bookmarks and S.bookmark_interval > 0:
                            wait = min(wait, S.bookmark_interval - (now - last_bm))
                        S.cv.wait(max(0.01, min(wait, 0.5)))
                    cur_rv = S.rv
                if API["server"] is None or w["drop"]:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                for rv, typ, obj in pend:
                    line = json.dumps({"type": typ, "object": obj}).encode() + b"\n"
                    if w["cut"]:
                        self.chunk(line[:len(line) // 2])
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if fault == "split":
                        for i in range(0, len(line), 7):
                            self.chunk(line[i:i + 7])
                    else:
                        self.chunk(line)
                    sent = rv
                if bm_due:
                    bm = {"type": "BOOKMARK", "object": {
                        "kind": res.kind, "apiVersion": api_version(res.group, res.version),
                        "metadata": {"resourceVersion": str(cur_rv)}}}
                    self.chunk(json.dumps(bm).encode() + b"\n")
                    sent = max(sent, cur_rv)
                    last_bm = time.time()
                if time.time() >= deadline:
                    self.chunk(b"")
                    return
        except OSError:
            self.close_connection = True
        finally:
            with S.cv:
                res.watchers.discard(id(w))
                S.wmap.pop(id(w), None)


def drop_watches(resource=None, how="drop"):
    with S.cv:
        for res, w in S.wmap.values():
            if resource is None or res.name == resource:
                w[how] = True
        S.cv.notify_all()


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        sock, addr = self.socket.accept()
        if API["ctx"] is not None:
            sock = API["ctx"].wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        pass


def api_up(port):
    srv = ApiServer(("127.0.0.1", port), ApiHandler)
    API["server"] = srv
    API["port"] = srv.server_address[1]
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    API["thread"] = t


def api_down():
    srv = API["server"]
    if srv is None:
        return
    with S.cv:
        API["server"] = None
        S.cv.notify_all()
    srv.shutdown()
    srv.server_close()
    with CONNS_LOCK:
        conns = list(API["conns"])
    for c in conns:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class CtlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, body, code=200):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/requests":
            with S.cv:
                return self.reply(list(S.requests))
        if self.path == "/state":
            with S.cv:
                objs = {r.name: ["/".join(x for x in k if x) for k in sorted(r.objects)]
                        for r in S.resources.values()}
                watches = {r.name: len(r.watchers) for r in S.resources.values()}
                return self.reply({"rv": S.rv, "objects": objs, "watches": watches,
                                   "up": API["server"] is not None})
        self.reply({"error": "no such path"}, 404)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
            out = self.op(self.path, body)
        except Exception as e:  # report, do not die
            return self.reply({"error": f"{type(e).__name__}: {e}"}, 400)
        self.reply(out)

    def op(self, path, b):
        if path == "/put":
            with S.cv:
                rv = 0
                for o in b.get("objects") or [b["object"]]:
                    rv = S.put(o)
                return {"rv": str(rv)}
        if path == "/delete":
            with S.cv:
                rv = S.delete(b["kind"], b.get("namespace"), b["name"])
            if rv is None:
                raise KeyError("no such object")
            return {"rv": str(rv)}
        if path == "/compact":
            with S.cv:
                S.compacted = S.rv  # a watch from an older version gets 410
                S.continues.clear()
                return {"compacted": S.compacted}
        if path == "/fault":
            if b["fault"] in ("drop", "cut"):
                drop_watches(b.get("resource"), b["fault"])
                return {}
            with S.cv:
                res = S.by_name(b["resource"])
                res.faults.append(dict(b))
            return {}
        if path == "/drop":
            drop_watches(b.get("resource"))
            return {}
        if path == "/set":
            with S.cv:
                if "bookmark_interval" in b:
                    S.bookmark_interval = float(b["bookmark_interval"])
                if "tokens" in b:
                    S.tokens = set(b["tokens"])
                if "gone_mode" in b:
                    S.gone_mode = b["gone_mode"]
                if "watch_cap" in b:
                    S.watch_cap = int(b["watch_cap"])
                for r, code in (b.get("status") or {}).items():
                    S.by_name(r).status = code or None
                for r, spec in (b.get("resources") or {}).items():
                    if spec is None:
                        res = S.by_name(r)
                        if res:
                            del S.resources[res.path()]
                    elif not S.by_name(r):
                        S.add_resource(r, *spec)
                S.cv.notify_all()
            return {}
        if path == "/down":
            api_down()
            return {}
        if path == "/up":
            if API["server"] is None:
                api_up(API["port"])
            return {}
        if path == "/requests/clear":
            with S.cv:
                S.requests.clear()
            return {}
        raise KeyError(f"no such operation {path}")


def load_conformance(d):
    """Namespaces, pods and policies of the conformance corpus, first of each name."""
    objs = {}

    def add(o):
        md = o.get("metadata", {})
        k = (o.get("kind"), md.get("namespace", ""), md.get("name"))
        if o.get("kind") and md.get("name") and k not in objs:
            objs[k] = o

    try:
        netpol = json.load(open(os.path.join(d, "netpol-cases.json")))
        anp = json.load(open(os.path.join(d, "anp-cases.json")))
    except OSError:
        return 0
    pod_ip = 1
    for ns in ("x", "y", "z"):
        add({"kind": "Namespace", "metadata": {"name": ns, "labels": {
            "kubernetes.io/metadata.name": ns, "ns": ns}}})
        for p in ("a", "b", "c"):
            add({"kind": "Pod", "metadata": {"name": p, "namespace": ns, "labels": {"pod": p}},
                 "spec": {"nodeName": "node-1", "containers": [{"name": "cont-80-tcp", "ports": [
                     {"containerPort": 80, "name": "serve-80-tcp", "protocol": "TCP"}]}]},
                 "status": {"phase": "Running", "podIP": f"10.0.0.{pod_ip}",
                            "podIPs": [{"ip": f"10.0.0.{pod_ip}"}]}})
            pod_ip += 1
    for c in netpol["cases"]:
        for p in c.get("policies", []):
            if "{{" not in json.dumps(p):
                add(p)
    for c in anp["cases"]:
        for o in c.get("objects", []):
            add(o)
    with S.cv:
        for o in objs.values():
            S.put(o)
    return len(objs)


def gen_certs(d):
    os.makedirs(d, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, cwd=d,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ext = os.path.join(d, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    cext = os.path.join(d, "client.ext")
    with open(cext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=clientAuth\n")
    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
            "-subj", f"/CN=moat test {ca}")
    for name, e, cn in (("server", "san.ext", "localhost"), ("client", "client.ext", "moat-test")):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/O=system:nodes/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", e)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "gen-certs":
        gen_certs(sys.argv[2])
        return 0
    args = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "serve" else sys.argv[1:]
    certs, port_file, conf, plain, stdin_eof = None, None, None, False, False
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--certs":
            certs = args[i + 1]; i += 2
        elif a == "--http":
            plain = True; i += 1
        elif a == "--token":
            S.tokens.add(args[i + 1]); i += 2
        elif a == "--port-file":
            port_file = args[i + 1]; i += 2
        elif a == "--exit-on-stdin-eof":
            stdin_eof = True; i += 1
        elif a == "--conformance":
            conf = args[i + 1]; i += 2
        else:
            print(f"fakeapi: unknown argument {a}", file=sys.stderr)
            return 2
    if not plain:
        if not certs:
            print("fakeapi: --certs DIR or --http", file=sys.stderr)
            return 2
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(certs, "server.crt"), os.path.join(certs, "server.key"))
        ctx.load_verify_locations(os.path.join(certs, "ca.crt"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        API["ctx"] = ctx
    if conf:
        load_conformance(conf)
    api_up(0)
    ctl = ThreadingHTTPServer(("127.0.0.1", 0), CtlHandler)
    ctl.daemon_threads = True
    line = f"READY {API['port']} {ctl.server_address[1]}"
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(line + "\n")
        os.rename(port_file + ".tmp", port_file)
    print(line, flush=True)
    if stdin_eof:  # stop when the test that started us goes away
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    ctl.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    random.seed()
    sys.exit(main())
