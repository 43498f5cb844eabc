#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""fakeapi.py plus the two review APIs moatd's Kubernetes roles use.

Same command line and control port as tests/tools/fakeapi.py (which it
loads), and on the API port:
  POST /apis/authentication.k8s.io/v1/tokenreviews
       status.authenticated and status.user (username, uid, groups) for the
       tokens given to /authz
  POST /apis/authorization.k8s.io/v1/subjectaccessreviews
       status.allowed when a rule matches, RBAC style: a rule with
       "namespace" is a RoleBinding (only questions about that namespace), a
       rule without one a ClusterRoleBinding (every namespace and the cluster
       scope); "*" matches any verb, group or resource.
Both need the caller's own credentials like any API request.
Control port, in addition:
  POST /authz  {"users": {TOKEN: {"username", "groups"?}},
                "rules": [{"user" | "group", "namespace"?, "verbs",
                           "apiGroups", "resources"}]}
  GET  /authz/stats  {"tokenreviews": n, "subjectaccessreviews": n}
"""
import importlib.util
import json
import os
import sys
import threading
import time
import urllib.parse

_spec = importlib.util.spec_from_file_location(
    "fakeapi", os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakeapi.py"))
fakeapi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fakeapi)

AUTHZ = {"users": {}, "rules": [], "tokenreviews": 0, "subjectaccessreviews": 0}
LOCK = threading.Lock()


def _has(lst, v):
    return "*" in lst or v in lst


def allowed(spec):
    ra = spec.get("resourceAttributes") or {}
    ns = ra.get("namespace", "")
    for r in AUTHZ["rules"]:
        if "user" in r and r["user"] != spec.get("user"):
            continue
        if "group" in r and r["group"] not in (spec.get("groups") or []):
            continue
        if r.get("namespace") and r["namespace"] != ns:
            continue
        if (_has(r.get("verbs", []), ra.get("verb", "")) and
                _has(r.get("apiGroups", []), ra.get("group", "")) and
                _has(r.get("resources", []), ra.get("resource", ""))):
            return True
    return False


def api_post(self):
    u = urllib.parse.urlsplit(self.path)
    n = int(self.headers.get("Content-Length") or 0)
    body = json.loads(self.rfile.read(n) or b"{}") if n else {}
    akind, tok, ok = self.auth()
    entry = {"path": u.path, "query": {}, "auth": akind, "token": tok, "time": time.time()}
    with fakeapi.S.cv:
        fakeapi.S.requests.append(entry)
    if not ok:
        entry["status"] = 401
        return self.send_json(401, fakeapi.status_body(401, "Unauthorized", "Unauthorized"))
    spec = body.get("spec") or {}
    if u.path == "/apis/authentication.k8s.io/v1/tokenreviews":
        with LOCK:
            AUTHZ["tokenreviews"] += 1
            user = AUTHZ["users"].get(spec.get("token", ""))
        st = {"authenticated": False}
        if user:
            st = {"authenticated": True,
                  "user": {"username": user["username"], "uid": "uid-" + user["username"],
                           "groups": list(user.get("groups", [])) + ["system:authenticated"]}}
        entry["status"] = 201
        return self.send_json(201, dict(body, status=st))
    if u.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
        with LOCK:
            AUTHZ["subjectaccessreviews"] += 1
            ok = allowed(spec)
        entry["status"] = 201
        return self.send_json(201, dict(body, status={"allowed": ok}))
    entry["status"] = 404
    self.send_json(404, fakeapi.status_body(404, "NotFound", "the server could not find the requested resource"))


_ctl_get = fakeapi.CtlHandler.do_GET
_ctl_op = fakeapi.CtlHandler.op


def ctl_get(self):
    if self.path == "/authz/stats":
        with LOCK:
            return self.reply({k: AUTHZ[k] for k in ("tokenreviews", "subjectaccessreviews")})
    return _ctl_get(self)


def ctl_op(self, path, b):
    if path == "/authz":
        with LOCK:
            AUTHZ["users"] = dict(b.get("users") or {})
            AUTHZ["rules"] = list(b.get("rules") or [])
        return {}
    return _ctl_op(self, path, b)


fakeapi.ApiHandler.do_POST = api_post
fakeapi.CtlHandler.do_GET = ctl_get
fakeapi.CtlHandler.op = ctl_op

if __name__ == "__main__":
    sys.exit(fakeapi.main())
