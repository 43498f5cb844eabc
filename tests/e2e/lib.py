#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Helpers for tests/e2e/*.sh and tests/lab/demo (run with python3).

  lib.py hash FILE...
      moat's content digest of each file (what /v1/sources reports).

  lib.py sync [--timeout SEC] DIR=SOCKET...
      Waits until every daemon (control socket SOCKET) has processed exactly
      the manifest files now in its directory DIR: each file listed with
      digest == the file's hash, and applied (applied_digest == digest) unless
      it has errors; no file listed that is not in DIR.  Prints one line per
      file that has errors ("NODE-SOCKET FILE STATUS: error; error").
      Exit 0: all applied without errors; 2: all processed, some with errors;
      1: timeout (prints what it was waiting for).

  lib.py echo-server --proto tcp|udp --port N
      Echoes every line (TCP, one thread per connection) or datagram (UDP)
      back, on :: and 0.0.0.0 (dual-stack socket).  Run it inside a pod with
      nsenter.  Stops on SIGTERM.

  lib.py hold --proto tcp|udp ADDR PORT [--interval 0.2] [--timeout 1.5]
              [--linger 2]
      A long-lived flow: sends "ping N\\n" every --interval and waits for the
      echo.  Prints "connected", then "pong N" per echo (flushed), and at the
      end exactly one "result ..." line:
        result alive N        SIGTERM/SIGINT while the flow still worked
        result timeout N      no echo within --timeout (a silent drop); after
                              it, --linger seconds are watched for a reset and
                              "result reset N" is printed instead if one came
        result reset N        the connection was reset (RST) or refused (ICMP)
        result closed N       the peer closed the connection
        result connect-failed the TCP handshake failed
      N = pongs received.  Exit 0 alive, 1 timeout, 2 reset/closed/failed.
"""
import http.client
import json
import os
import select
import signal
import socket
import sys
import threading
import time

M64 = (1 << 64) - 1


def moat_hash(data, seed=0):
    """hostd/util.c moat_hash: FNV-1a 64 then a splitmix64 finaliser."""
    h = 0xcbf29ce484222325 ^ seed
    for c in data:
        h ^= c
        h = (h * 0x100000001b3) & M64
    h ^= h >> 30
    h = (h * 0xbf58476d1ce4e5b9) & M64
    h ^= h >> 27
    h = (h * 0x94d049bb133111eb) & M64
    h ^= h >> 31
    return "%016x" % h


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("moatd", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def api(sock, path, timeout=5):
    c = UnixHTTP(sock, timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("%s %s: HTTP %d" % (sock, path, r.status))
        return json.loads(body)
    finally:
        c.close()


def wanted(name):
    if name.startswith(".") or name.endswith("~"):
        return False
    return name.endswith(".json") or name.endswith(".yaml") or name.endswith(".yml")


def cmd_hash(args):
    for f in args:
        with open(f, "rb") as fh:
            print("%s  %s" % (moat_hash(fh.read()), f))
    return 0


def cmd_sync(args):
    timeout = 20.0
    pairs = []
    i = 0
    while i < len(args):
        if args[i] == "--timeout":
            timeout = float(args[i + 1])
            i += 2
            continue
        d, _, s = args[i].partition("=")
        if not s:
            print("sync: expected DIR=SOCKET, got %r" % args[i], file=sys.stderr)
            return 64
        pairs.append((d, s))
        i += 1
    deadline = time.time() + timeout
    while True:
        waiting = None
        errors = []
        for d, s in pairs:
            want = {}
            for n in sorted(os.listdir(d)):
                p = os.path.join(d, n)
                if wanted(n) and os.path.isfile(p):
                    with open(p, "rb") as fh:
                        want[n] = moat_hash(fh.read())
            try:
                src = {x["file"]: x for x in api(s, "/v1/sources")}
            except (OSError, RuntimeError, ValueError) as e:
                waiting = "%s: %s" % (s, e)
                break
            for n, dg in want.items():
                x = src.get(n)
                if not x or x["digest"] != dg:
                    waiting = "%s: %s not read yet" % (s, n)
                    break
                if x["errors"] or x["status"] != "ok":
                    errors.append("%s %s %s: %s" % (os.path.basename(s), n, x["status"],
                                                    "; ".join(x["errors"])))
                elif x["applied_digest"] != dg:
                    waiting = "%s: %s not applied yet" % (s, n)
                    break
            if waiting:
                break
            for n in src:
                if n not in want:
                    waiting = "%s: %s still loaded" % (s, n)
                    break
            if waiting:
                break
        if not waiting:
            for e in errors:
                print(e)
            return 2 if errors else 0
        if time.time() > deadline:
            print("sync: timeout: " + waiting)
            return 1
        time.sleep(0.03)


def cmd_echo_server(args):
    proto, port = "tcp", None
    i = 0
    while i < len(args):
        if args[i] == "--proto":
            proto = args[i + 1]
        elif args[i] == "--port":
            port = int(args[i + 1])
        else:
            print("echo-server: unknown argument %r" % args[i], file=sys.stderr)
            return 64
        i += 2
    if port is None or proto not in ("tcp", "udp"):
        return 64
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    if proto == "udp":
        while True:
            data, peer = s.recvfrom(65535)
            s.sendto(data, peer)
    s.listen(64)

    def serve(c):
        try:
            while True:
                data = c.recv(4096)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def cmd_hold(args):
    proto, interval, timeout, linger = "tcp", 0.2, 1.5, 2.0
    pos = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--proto":
            proto = args[i + 1]
            i += 2
        elif a == "--interval":
            interval = float(args[i + 1])
            i += 2
        elif a == "--timeout":
            timeout = float(args[i + 1])
            i += 2
        elif a == "--linger":
            linger = float(args[i + 1])
            i += 2
        else:
            pos.append(a)
            i += 1
    if len(pos) != 2 or proto not in ("tcp", "udp"):
        print("usage: hold --proto tcp|udp ADDR PORT", file=sys.stderr)
        return 64
    addr, port = pos[0], int(pos[1])
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    stop = {"flag": False}

    def on_sig(*_):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_sig)
    signal.signal(signal.SIGINT, on_sig)

    def out(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.connect((addr, port))
    except OSError:
        out("result connect-failed")
        return 2
    s.setblocking(False)
    out("connected")
    pongs = 0
    n = 0
    buf = b""

    def drain():
        """Reads what arrived; returns (echoes counted, 'reset'|'closed'|None)."""
        nonlocal buf
        got = 0
        while True:
            try:
                data = s.recv(65535)
            except BlockingIOError:
                return got, None
            except (ConnectionResetError, ConnectionRefusedError):
                return got, "reset"
            except OSError:
                return got, "reset"
            if not data:
                return got, "closed" if proto == "tcp" else None
            if proto == "udp":
                got += 1
                continue
            buf += data
            while b"\n" in buf:
                _, buf = buf.split(b"\n", 1)
                got += 1

    while not stop["flag"]:
        n += 1
        try:
            s.send(b"ping %d\n" % n)
        except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
            out("result reset %d" % pongs)
            return 2
        except BlockingIOError:
            pass
        deadline = time.time() + timeout
        got_this = False
        while not stop["flag"]:
            left = deadline - time.time()
            if left <= 0:
                break
            r, _, _ = select.select([s], [], [], min(left, 0.05))
            if not r:
                continue
            got, ev = drain()
            for _ in range(got):
                pongs += 1
                out("pong %d" % pongs)
            if got:
                got_this = True
            if ev:
                out("result %s %d" % (ev, pongs))
                return 2
            if got_this:
                break
        if stop["flag"]:
            break
        if not got_this:
            # silent drop?  watch for a reset for a while (TCP retransmits
            # the ping; a RST or ICMP error would surface here)
            end = time.time() + linger
            next_ping = time.time() + interval
            while time.time() < end:
                r, _, _ = select.select([s], [], [], 0.05)
                if r:
                    got, ev = drain()
                    if ev:
                        out("result reset %d" % pongs)
                        return 2
                if proto == "udp" and time.time() >= next_ping:
                    # UDP has no retransmission: keep asking, so an ICMP
                    # error would have something to answer
                    next_ping = time.time() + interval
                    try:
                        s.send(b"ping %d\n" % n)
                    except OSError:
                        out("result reset %d" % pongs)
                        return 2
            out("result timeout %d" % pongs)
            return 1
        # the pace: one ping per interval
        time.sleep(interval)
    out("result alive %d" % pongs)
    return 0


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 64
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "hash":
        return cmd_hash(args)
    if cmd == "sync":
        return cmd_sync(args)
    if cmd == "echo-server":
        return cmd_echo_server(args)
    if cmd == "hold":
        return cmd_hold(args)
    print("unknown command %s" % cmd, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main())
