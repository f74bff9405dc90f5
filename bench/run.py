#!/usr/bin/env python3
"""`make bench`: onefile against the baselines a user would compare it with,
measured side by side in the same run (interleaved, medians), printed as
ratios. Absolute times on a shared machine vary; the ratios are the result.

Cases (each prints one table row, or a few):
  1. warm start: packed executable vs the unpacked entry run directly
  2. cold start: first launch vs `zstd -dc | tar -x` of the same tree's .tar.zst
  3. pack: `payload-tools pack` vs `tar -c | zstd -T0` at the same level,
     and packed size vs stub + that .tar.zst; payload size (stub
     excluded) vs that .tar.zst at levels 9 and 19, and on a tree of
     50,000 small files
  4. incremental updates of a 40 MB app from nginx on loopback: bytes
     fetched (nginx's access log, checked against `payload-tools inspect
     --against`) over the build's size, for one 20 KB file changed, 100
     bytes changed inside an 8 MB library, and a version two releases back;
     update time against the same client downloading the whole build; peak
     RSS; the first launch after the update vs a warm start of that build
  5. full download: update of a ~200 MB build from nginx on loopback vs
     `curl -o` into a temporary file beside the old build, fsync, rename
     over it (and, for context, a raw `curl -o`, and Python's http.server,
     which serves no ranges); peak RSS of the launcher
  6. peak RSS of a cold start of a 1 GiB payload, and the stub's size
  7. a tiny CLI app with updates on, launched against a host that accepts
     connections and never answers: the launch's wall time, and the time
     until `app | cat` sees end of file, vs the same app packed without
     updates; the same for the binaries in BASELINE_BIN_DIR (a build
     before the background updater), if given; and a launch whose app
     exits during a slow download, whose background updater must install
     it afterwards

Environment: BIN_DIR (default target/release), BENCH_DIR (default
bench-work), BENCH_QUICK=1 for fewer runs and smaller inputs,
BASELINE_BIN_DIR (case 7's before), BENCH_ONLY=<function name> for one
case (e.g. BENCH_ONLY=bench_stalled_host).
"""

import http.server
import itertools
import json
import os
import random
import shutil
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time

BIN = os.path.abspath(os.environ.get("BIN_DIR", "target/release"))
WORK = os.path.abspath(os.environ.get("BENCH_DIR", "bench-work"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
TOOLS = os.path.join(BIN, "payload-tools")
STUB = os.path.join(BIN, "bootstrap")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LEVEL = "9"
ROWS = []


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def run_measured(argv, env=None, rss=False):
    """Runs argv to completion; returns (seconds, peak RSS in KiB or None).

    Peak RSS comes from GNU time, a small process of its own: a child forked
    by this (large) Python process would carry Python's RSS in its figure."""
    rss_file = os.path.join(WORK, "rss.txt")
    if rss:
        argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + list(argv)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {argv}")
    if rss:
        with open(rss_file) as f:
            return elapsed, int(f.read().split()[-1])
    return elapsed, None


def interleaved(cases, runs, prepare=None):
    """Runs each case `runs` times, alternating; returns medians (seconds)."""
    times = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            if prepare:
                prepare(name)
            times[name].append(fn())
    return {name: statistics.median(t) for name, t in times.items()}


def met(ok, verdict):
    return verdict if ok else f"{verdict} — not met"


def row(case, ours, base, goal, verdict):
    ROWS.append((case, ours, base, goal, verdict))
    print(f"  {case}: {ours} vs {base} -> {verdict}", flush=True)


def make_tree(root, total_mb, files):
    """A realistic app folder: many small text-like modules, some binary
    libraries, a few large files; deterministic."""
    rng = random.Random(42)
    os.makedirs(root)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 10))) for _ in range(2000)]
    budget = total_mb << 20
    big = [budget // 8, budget // 10, budget // 12]
    for i, size in enumerate(big):
        path = os.path.join(root, "lib", f"libbig{i}.so")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(rng.randbytes(size // 2) + bytes(size - size // 2))
    rest = budget - sum(big)
    per = rest // files
    for i in range(files):
        path = os.path.join(root, "lib", f"pkg{i % 40}", f"mod{i}.py" if i % 5 else f"ext{i}.so")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        size = max(64, int(rng.expovariate(1 / per)))
        with open(path, "wb") as f:
            if i % 5:
                out = bytearray()
                while len(out) < size:
                    out += b" ".join(rng.choice(words) for _ in range(12)) + b"\n"
                f.write(out[:size])
            else:
                f.write(rng.randbytes(size))
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy("/bin/true", os.path.join(root, "bin", "app"))


def make_small_tree(root, files):
    """A node_modules-like folder: `files` small JavaScript, JSON and
    Markdown files of similar text (25 per package); deterministic."""
    rng = random.Random(7)
    words = ["function", "return", "const", "var", "let", "require", "module", "exports",
             "this", "if", "else", "for", "while", "new", "null", "undefined", "true", "false",
             "typeof", "prototype", "length", "push", "call", "apply", "Object", "Array",
             "String", "options", "callback", "err", "value", "key", "index", "result"]
    words += ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 12))) for _ in range(3000)]
    os.makedirs(root)
    n = 0
    while n < files:
        pkg = os.path.join(root, "node_modules", f"pkg{n // 25}")
        name = rng.choice(words)
        i = n % 25
        if i == 0:
            deps = ",\n".join('    "%s": "^%d.%d.0"' % (rng.choice(words), rng.randint(0, 9), rng.randint(0, 9)) for _ in range(rng.randint(0, 6)))
            path = os.path.join(pkg, "package.json")
            text = '{\n  "name": "%s",\n  "version": "%d.%d.%d",\n  "main": "index.js",\n  "license": "MIT",\n  "dependencies": {\n%s\n  }\n}\n' % (
                name, rng.randint(0, 9), rng.randint(0, 20), rng.randint(0, 30), deps)
        elif i == 1:
            path = os.path.join(pkg, "README.md")
            text = "# %s\n\n" % name + " ".join(rng.choice(words) for _ in range(rng.randint(20, 300))) + "\n"
        else:
            path = os.path.join(pkg, "lib", f"{rng.choice(words)}{i}.js")
            lines = ["'use strict';", "", "var %s = require('%s');" % (rng.choice(words), rng.choice(words))]
            for _ in range(int(rng.expovariate(1 / 18)) + 2):
                lines.append("  %s %s = %s(%s, %s);" % (rng.choice(words[:8]), rng.choice(words), rng.choice(words), rng.choice(words), rng.choice(words)))
            lines.append("module.exports = %s;" % rng.choice(words))
            text = "\n".join(lines) + "\n"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(text)
        n += 1
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy("/bin/true", os.path.join(root, "bin", "app"))


def payload_len(exe):
    import json
    info = subprocess.run([TOOLS, "inspect", "--json", exe], check=True, capture_output=True, text=True).stdout
    return json.loads(info)["payload_len"]


def bench_packed_size():
    """Payload bytes (stub excluded) vs `tar -c | zstd -T0` of the same tree
    at the same level: what independent frames cost in ratio."""
    tree = os.path.join(WORK, "size-tree")
    mb, count = (10, 300) if QUICK else (40, 1000)
    make_tree(tree, mb, count)  # the bench tree, as bench_tree makes it
    small = os.path.join(WORK, "small-tree")
    files = 10000 if QUICK else 50000
    make_small_tree(small, files)
    cases = [(tree, "bench tree", "9", "<= 1.01x"), (small, f"{files:,} small files", "9", "<= 1.05x")]
    if not QUICK:
        cases.append((tree, "bench tree", "19", "<= 1.02x"))
    for root, what, level, goal in cases:
        exe = os.path.join(WORK, "size.bin")
        ref = os.path.join(WORK, "size.tar.zst")
        sh(f"'{TOOLS}' pack '{root}' --entry bin/app --name size --level {level} -o '{exe}' 2>/dev/null")
        sh(f"tar -C '{root}' -c . | zstd -q -T0 -{level} -o '{ref}' -f")
        ours, base = payload_len(exe), os.path.getsize(ref)
        row(f"payload size, {what}, level {level}", f"{ours:,} B", f"{base:,} B (tar -c | zstd -T0 -{level})", goal, f"{ours/base:.4f}x")
    shutil.rmtree(small, ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)


def bench_tree():
    tree = os.path.join(WORK, "tree")
    mb, files = (10, 300) if QUICK else (40, 1000)
    make_tree(tree, mb, files)
    exe = os.path.join(WORK, "app.bin")
    cache = os.path.join(WORK, "cache")
    env = dict(os.environ, ONEFILE_CACHE_DIR=cache)
    env.pop("AUTO_UPDATE_DEBUG", None)
    runs = 5 if QUICK else 15

    # 3. pack vs tar | zstd -T0
    tarzst = os.path.join(WORK, "tree.tar.zst")
    t = interleaved(
        {
            "pack": lambda: run_measured([TOOLS, "pack", tree, "--entry", "bin/app", "--name", "bench", "--level", LEVEL, "-o", exe])[0],
            "tar": lambda: run_measured(["sh", "-c", f"tar -C '{tree}' -c . | zstd -q -T0 -{LEVEL} -o '{tarzst}' -f"])[0],
        },
        3 if QUICK else 5,
    )
    ratio = t["pack"] / t["tar"]
    row(f"pack time ({mb} MB, {files:,} files)", f"{t['pack']*1e3:.0f} ms", f"{t['tar']*1e3:.0f} ms (tar|zstd -T0 -{LEVEL})", "<= 1.00x", f"{ratio:.2f}x")
    packed = os.path.getsize(exe)
    base = os.path.getsize(STUB) + os.path.getsize(tarzst)
    row("packed size", f"{packed:,} B", f"{base:,} B (stub + .tar.zst)", "<= 1.01x", f"{packed/base:.4f}x")

    # 1. warm start vs the entry run directly
    assert run_measured([exe], env=env)[0] >= 0  # unpack once
    entry = os.path.join(cache, "bench", sorted(d for d in os.listdir(os.path.join(cache, "bench")) if os.path.isdir(os.path.join(cache, "bench", d)))[0], "bin", "app")
    warm_runs = 40 if QUICK else 200
    t = interleaved({"packed": lambda: run_measured([exe], env=env)[0], "direct": lambda: run_measured([entry], env=env)[0]}, warm_runs)
    added = (t["packed"] - t["direct"]) * 1e3
    row(f"warm start ({mb} MB app)", f"{t['packed']*1e3:.2f} ms", f"{t['direct']*1e3:.2f} ms (entry run directly)", "<= +2 ms", f"+{added:.2f} ms ({t['packed']/t['direct']:.2f}x)")

    # 2. cold start vs zstd -dc | tar -x of the same tree's .tar.zst (the
    # payload itself may need its dictionary, which zstd -dc does not know)
    payload = os.path.join(WORK, "payload.tar.zst")
    shutil.copyfile(tarzst, payload)
    out_dir = os.path.join(WORK, "untar")

    def prepare(name):
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        sh("sync")

    t = interleaved(
        {
            "cold": lambda: run_measured([exe], env=env)[0],
            "untar": lambda: run_measured(["sh", "-c", f"zstd -dc '{payload}' | tar -x -C '{out_dir}'"])[0],
        },
        runs,
        prepare,
    )
    row(f"cold start ({mb} MB app)", f"{t['cold']*1e3:.0f} ms", f"{t['untar']*1e3:.0f} ms (zstd -dc | tar -x)", "<= 1.00x", f"{t['cold']/t['untar']:.2f}x")
    for path in (tree, cache, out_dir):
        shutil.rmtree(path, ignore_errors=True)
    for path in (exe, tarzst, payload):
        os.remove(path)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class QuietServer(socketserver.ThreadingTCPServer):
    def handle_error(self, request, client_address):
        # The updater hangs up on a whole file sent in answer to its
        # request for the file's end: expected, not worth a traceback.
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(root, work, server=""):
    """nginx serving `root` on a free loopback port, as a deployment would
    (sendfile, ETags, ranges), logging each request's body bytes to
    `work/logs/access.log`, with `server` added to its server block.
    Returns (port, stop)."""
    port = free_port()
    os.makedirs(os.path.join(work, "logs"))
    os.makedirs(os.path.join(work, "tmp"))
    conf = os.path.join(work, "nginx.conf")
    temp = " ".join(f"{kind}_temp_path {work}/tmp;" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(conf, "w") as f:
        f.write(f"daemon off; master_process off; pid {work}/nginx.pid; error_log {work}/logs/error.log;\n"
                f"events {{ worker_connections 64; }}\n"
                f"http {{ log_format bench '$status $body_bytes_sent $uri'; access_log {work}/logs/access.log bench;\n"
                f"  sendfile on; {temp}\n"
                f"  server {{ listen 127.0.0.1:{port}; root {root}; {server} }} }}\n")
    proc = subprocess.Popen([NGINX, "-c", conf, "-p", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise SystemExit("nginx did not start")

    def stop():
        proc.terminate()
        proc.wait()
    return port, stop


class AccessLog:
    """What nginx sent, from its access log (`start_nginx`): each `since()`
    marks a point, `served()` sums what was sent for one path after it."""

    def __init__(self, work):
        self.path = os.path.join(work, "logs", "access.log")
        self.mark = 0

    def since(self):
        self.mark = os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def served(self, uri):
        """(body bytes sent for `uri`, requests for it, their statuses)."""
        with open(self.path, "rb") as f:
            f.seek(self.mark)
            lines = [line.split() for line in f.read().decode().splitlines()]
        hits = [(int(status), int(sent)) for status, sent, path in lines if path == uri]
        return sum(sent for _, sent in hits), len(hits), sorted({status for status, _ in hits})


def start_python_server(root):
    """Python's http.server on a free loopback port: no ranges, so the
    updater checks the payload after the download. Returns (port, stop)."""
    handler = lambda *a, **k: QuietHandler(*a, directory=root, **k)
    server = QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], server.shutdown


def bench_update():
    """4. A full download: 1.0 and 1.1 share no bytes (their data differ),
    so the updater downloads the whole of 1.1, as from any old build."""
    size_mb = 40 if QUICK else 200
    app = os.path.join(WORK, "bigapp")
    os.makedirs(os.path.join(app, "bin"))
    shutil.copy("/bin/true", os.path.join(app, "bin", "app"))
    rss = []
    for kind in ("nginx", "python"):
        site = os.path.join(WORK, f"site-{kind}")
        os.makedirs(site)
        log = None
        if kind == "nginx":
            port, stop = start_nginx(site, os.path.join(WORK, "nginx"))
            log = AccessLog(os.path.join(WORK, "nginx"))
        else:
            port, stop = start_python_server(site)
        try:
            t, size = time_update(app, size_mb, site, port, rss, log)
        finally:
            stop()
        shutil.rmtree(site)
        if kind == "nginx":
            row(f"update: full download + verify + install ({size:.0f} MB, nginx)", f"{size/t['ours']:.0f} MB/s",
                f"{size/t['curl_durable']:.0f} MB/s (curl -o into a temporary file beside the old build, fsync, rename over it, fsync the folder)",
                ">= 1.00x", met(t['curl_durable'] / t['ours'] >= 1.0, f"{t['curl_durable']/t['ours']:.2f}x"))
            row("  same, against a raw curl -o", f"{size/t['ours']:.0f} MB/s", f"{size/t['curl']:.0f} MB/s (curl -o into a new file, not synced)", "(for context)", f"{t['curl']/t['ours']:.2f}x")
            row("  same, to the process's exit (the new build's folder prepared)", f"{size/t['ours_exit']:.0f} MB/s", f"{size/t['curl_durable']:.0f} MB/s (curl -o, fsync, rename, as above)", "(for context)", f"{t['curl_durable']/t['ours_exit']:.2f}x")
        else:
            row("  same, from Python's http.server (no ranges)", f"{size/t['ours']:.0f} MB/s", f"{size/t['curl']:.0f} MB/s (curl -o)", "(for context)", f"{t['curl']/t['ours']:.2f}x")
    shutil.rmtree(app)
    row("update peak RSS (full download)", f"{max(rss)/1024:.1f} MiB", "-", "< 64 MiB", met(max(rss) < 64 * 1024, f"{max(rss)/1024:.1f} MiB"))


def time_update(app, size_mb, site, port, rss, log):
    """Packs 1.0 and 1.1 of `app` (`size_mb` of random data each, not the
    same) for the server on `port` serving `site`, then times 1.0 updating
    itself to 1.1, to the install ("ours") and to its exit ("ours_exit",
    after preparing the new build's folder), against `curl -o` of 1.1:
    into a new file, and (with
    nginx) as an update does it, from the same start: into a temporary
    file beside a copy of 1.0, fsync, rename over 1.0, fsync the folder.
    With nginx's access `log`, checks that each update downloaded the
    whole build. Returns medians and the size of 1.1 in MB."""
    spec = f"http://127.0.0.1:{port}/{{VERSION}}/update.toml"
    for seed, version in enumerate(("1.0", "1.1")):
        with open(os.path.join(app, "data.bin"), "wb") as f:
            f.write(random.Random(seed).randbytes(size_mb << 20))
        sh(f"'{TOOLS}' pack '{app}' --entry bin/app --name big --version {version} --level 1 --update-url-spec '{spec}' "
           f"--update-exit-wait 600 --auto-update-toml-file '{site}/{version}/update.toml' -o '{site}/{version}/big.bin' 2>/dev/null")
    shutil.copy(f"{site}/1.1/update.toml", f"{site}/1.0/update.toml")
    new = f"{site}/1.1/big.bin"
    new_len = os.path.getsize(new)
    user = os.path.join(site, "user")
    os.makedirs(user)
    exe = os.path.join(user, "big.bin")
    env = dict(os.environ, ONEFILE_CACHE_DIR=os.path.join(site, "cache"))
    curl_out = os.path.join(site, "curl.bin")
    url = f"http://127.0.0.1:{port}/1.1/big.bin"

    def ours():
        shutil.copy(f"{site}/1.0/big.bin", exe)
        run_measured([exe], env=dict(env, AUTO_UPDATE_DISABLE="1"))  # unpack outside the timing
        sh("sync")
        if log:
            log.since()
        secs, exit_secs, kib = run_until_replaced(exe, env)
        exits.append(exit_secs)
        with open(exe, "rb") as f, open(new, "rb") as g:
            if f.read(1 << 16) != g.read(1 << 16) or os.path.getsize(exe) != new_len:
                raise SystemExit("update did not install")
        if log:
            sent = log.served("/1.1/big.bin")[0]
            if sent < new_len:
                raise SystemExit(f"the full-download case fetched {sent:,} of {new_len:,} B: not a full download")
        rss.append(kib)
        return secs

    def curl():
        if os.path.exists(curl_out):
            os.remove(curl_out)
        sh("sync")
        return run_measured(["curl", "-sf", "-o", curl_out, url])[0]

    def curl_durable():
        # The same start and end as ours: the old build on disk (and in the
        # page cache), the new one durably in its place.
        shutil.copy(f"{site}/1.0/big.bin", exe)
        sh("sync")
        partial = os.path.join(user, ".big.bin.part")
        return run_measured(["sh", "-c", f"curl -sf -o '{partial}' '{url}' && sync '{partial}' && mv -f '{partial}' '{exe}' && sync '{user}'"])[0]

    exits = []
    cases = {"ours": ours, "curl": curl}
    if log:
        cases["curl_durable"] = curl_durable
    runs = 3 if QUICK else 9
    t = interleaved(cases, runs)
    t["ours_exit"] = statistics.median(exits)
    return t, new_len / 1e6


class Content:
    """Deterministic file contents like a real app's: text (source code,
    symbol tables: words drawn from a skewed vocabulary) and seeded noise
    (machine code, data), mixed so that zstd ratios are realistic."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        vocab = [bytes(self.rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(self.rng.randint(2, 12))) for _ in range(3000)]
        vocab += [b"\n", b"\n    ", b"(", b"):", b"=", b"self."]
        # Zipf-like weights: a few words are common, most are rare.
        weights = [1 / (i + 1) for i in range(len(vocab) - 6)] + [0.5, 0.5, 0.2, 0.2, 0.2, 0.1]
        self.vocab = vocab
        self.cum = list(itertools.accumulate(weights))

    def text(self, size):
        out = b" ".join(self.rng.choices(self.vocab, cum_weights=self.cum, k=size // 5 + 16))
        while len(out) < size:
            out += b" ".join(self.rng.choices(self.vocab, cum_weights=self.cum, k=size // 5 + 16))
        return out[:size]

    def library(self, size):
        """Runs of noise and of text (code, then symbol and string tables)."""
        chunks, n = [], 0
        while n < size:
            k = self.rng.randint(2, 32) * 1024
            chunks.append(self.rng.randbytes(k) if self.rng.random() < 0.3 else self.text(k))
            n += k
        return b"".join(chunks)[:size]


# The incremental-update app: 40 MB like a real one, three large libraries
# (the first the 8 MB one that a release patches) and many small modules.
LIBRARIES = (("lib/libcore.so", 8 << 20), ("lib/libui.so", 6 << 20), ("lib/libextra.so", 4 << 20))
SMALL_FILES = 1500
CHANGED_FILE = "lib/pkg07/mod_changed.py"


def make_app(root):
    """Version 1.0 of the incremental-update app (~40 MB); deterministic."""
    content = Content(12)
    for path, size in LIBRARIES:
        write(os.path.join(root, path), content.library(size))
    small = (40 << 20) - sum(size for _, size in LIBRARIES) - 20 * 1024
    mean = small // SMALL_FILES
    for i in range(SMALL_FILES):
        size = max(64, int(content.rng.expovariate(1 / mean)))
        name = f"lib/pkg{i % 60:02}/mod{i}.py" if i % 5 else f"lib/pkg{i % 60:02}/_ext{i}.so"
        write(os.path.join(root, name), content.text(size) if i % 5 else content.library(size))
    write(os.path.join(root, CHANGED_FILE), content.text(20 * 1024))
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy("/bin/true", os.path.join(root, "bin", "app"))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def bench_incremental():
    """Incremental updates from nginx, three releases of a 40 MB app:
    1.1 changes one 20 KB file, 1.2 changes 100 bytes inside the 8 MB
    library. Rows: the bytes each real update fetched (nginx's access log,
    checked against `payload-tools inspect --against`) over the size of
    the whole build; the time of 1.0 -> 1.1 against the same client
    downloading the whole of 1.1; the client's peak RSS; the first launch
    after the update against a warm start of the same build."""
    work = os.path.join(WORK, "incremental")
    site = os.path.join(work, "site")
    app = os.path.join(work, "app")
    os.makedirs(site)
    make_app(app)
    port, stop = start_nginx(site, os.path.join(work, "nginx"))
    log = AccessLog(os.path.join(work, "nginx"))
    try:
        incremental_rows(work, site, app, port, log)
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)


def incremental_rows(work, site, app, port, log):
    spec = f"http://127.0.0.1:{port}/{{VERSION}}/update.toml"

    def pack(version, out, extra=f"--level {LEVEL}"):
        """Packs `version` into `out`; its announcement (the update.toml
        that offers it) goes to `work/offers`."""
        os.makedirs(os.path.join(work, "offers"), exist_ok=True)
        sh(f"'{TOOLS}' pack '{app}' --entry bin/app --name inc --version {version} --update-url-spec '{spec}' "
           f"--update-exit-wait 600 --auto-update-toml-file '{work}/offers/{version}.toml' -o '{out}' {extra} 2>/dev/null")

    build = {v: os.path.join(site, v, "inc.bin") for v in ("1.0", "1.1", "1.2")}
    pack("1.0", build["1.0"])
    # The same 1.0 sharing no part with any release: another level (no
    # frame in common) and a stub one byte longer (same code, another
    # hash). Updating from it downloads the whole build, with the same
    # client, from the same server: the full download to compare with.
    padded = os.path.join(work, "bootstrap-padded")
    with open(STUB, "rb") as f, open(padded, "wb") as o:
        o.write(f.read() + b"\0")
    os.chmod(padded, 0o755)
    unrelated = os.path.join(work, "unrelated", "inc.bin")
    pack("1.0", unrelated, f"--level 3 --stub '{padded}'")
    content = Content(13)
    write(os.path.join(app, CHANGED_FILE), content.text(20 * 1024))
    # Each release is packed as a release manager does: with --previous,
    # so that it keeps the previous build's dictionary (a fresh one would
    # change every frame).
    pack("1.1", build["1.1"], f"--level {LEVEL} --previous '{build['1.0']}'")
    lib, lib_size = LIBRARIES[0]
    with open(os.path.join(app, lib), "r+b") as f:
        f.seek(lib_size * 37 // 100)
        f.write(content.rng.randbytes(100))
    pack("1.2", build["1.2"], f"--level {LEVEL} --previous '{build['1.1']}'")
    shutil.rmtree(app)

    user = os.path.join(work, "user")
    os.makedirs(user)
    exe = os.path.join(user, "inc.bin")
    cache = os.path.join(work, "cache")
    env = dict(os.environ, ONEFILE_CACHE_DIR=cache)
    env.pop("AUTO_UPDATE_DEBUG", None)
    quiet = dict(env, AUTO_UPDATE_DISABLE="1")

    def announce(old_version, new_version):
        """What `old_version` finds at its update URL: an offer of `new_version`."""
        shutil.copy(os.path.join(work, "offers", f"{new_version}.toml"), os.path.join(site, old_version, "update.toml"))

    def update(old_build, new_version):
        """The user's `old_build`, unpacked as after its own first launch,
        updates itself to `new_version`: (seconds, peak RSS in KiB)."""
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copy(old_build, exe)
        run_measured([exe], env=quiet)
        sh("sync")
        log.since()
        installed, secs, kib = run_until_replaced(exe, env)
        if not same_bytes(exe, build[new_version]):
            raise SystemExit(f"the update to {new_version} did not install it")
        return installed, secs, kib

    # 1. Bytes: one real update each, as nginx counted them.
    for old, new, case, goal in (
        ("1.0", "1.1", "one 20 KB file changed in a 40 MB app", 2.0),
        ("1.1", "1.2", "100 bytes changed inside an 8 MB library", 5.0),
        ("1.0", "1.2", "a version two releases back (1.0 -> 1.2)", 7.0),
    ):
        announce(old, new)
        update(build[old], new)
        sent, requests, statuses = log.served(f"/{new}/inc.bin")
        predicted = inspect_against(build[new], build[old])
        whole = os.path.getsize(build[new])
        percent = sent * 100 / whole
        check = "as inspect --against predicted" if (sent, requests) == (predicted["fetched_bytes"], predicted["requests"]) else \
            f"inspect --against predicted {predicted['fetched_bytes']:,} B in {predicted['requests']} requests"
        row(f"update fetch: {case}", f"{sent:,} B in {requests} requests ({check})", f"{whole:,} B (the whole build)",
            f"<= {goal:.0f}%", met(percent <= goal, f"{percent:.2f}%"))

    # 2. and 4. Time: 1.0 -> 1.1 assembled, against the whole of 1.1
    # downloaded by the same client; after each assembled update, its
    # first launch against warm starts of the same build.
    announce("1.0", "1.1")
    # What 1.1 finds once installed: itself, nothing to do.
    announce("1.1", "1.1")
    rss, first, warm, exits = [], [], [], {"incremental": [], "full": []}

    def incremental():
        secs, exit_secs, kib = update(build["1.0"], "1.1")
        exits["incremental"].append(exit_secs)
        sent = log.served("/1.1/inc.bin")[0]
        if sent >= os.path.getsize(build["1.1"]):
            raise SystemExit(f"the incremental case fetched {sent:,} B: the whole build")
        rss.append(kib)
        # As when the user next starts the app, some time later: what the
        # update wrote is on disk (so is whatever else the machine wrote).
        # Both with updates on, as the app normally runs (its check finds
        # nothing newer): the earlier build's folder is removed while the
        # app runs. With AUTO_UPDATE_DISABLE the launcher executes the app
        # and removes it first (docs/benchmarks.md says what that costs).
        sh("sync")
        first.append(run_measured([exe], env=env)[0])
        sh("sync")
        warm.extend(run_measured([exe], env=env)[0] for _ in range(20))
        return secs

    def full():
        secs, exit_secs, _ = update(unrelated, "1.1")
        exits["full"].append(exit_secs)
        sent = log.served("/1.1/inc.bin")[0]
        if sent < os.path.getsize(build["1.1"]):
            raise SystemExit(f"the full-download case fetched {sent:,} B: not the whole build")
        return secs

    t = interleaved({"incremental": incremental, "full": full}, 2 if QUICK else 7)
    size = os.path.getsize(build["1.1"])
    row(f"update time to installed, incremental (1.0 -> 1.1, {size/1e6:.0f} MB build, nginx)", f"{t['incremental']*1e3:.0f} ms",
        f"{t['full']*1e3:.0f} ms (the same client downloading the whole build)", "< 1.00x",
        met(t["incremental"] < t["full"], f"{t['incremental']/t['full']:.2f}x"))
    inc_exit, full_exit = statistics.median(exits["incremental"]), statistics.median(exits["full"])
    row("  same, to the process's exit (the new build's folder prepared)", f"{inc_exit*1e3:.0f} ms", f"{full_exit*1e3:.0f} ms", "(for context)",
        f"{inc_exit/full_exit:.2f}x")
    row("update peak RSS (incremental)", f"{max(rss)/1024:.1f} MiB", "-", "< 64 MiB", met(max(rss) < 64 * 1024, f"{max(rss)/1024:.1f} MiB"))
    f, w = statistics.median(first), statistics.median(warm)
    added = (f - w) * 1e3
    row("first launch after an update (40 MB app)", f"{f*1e3:.2f} ms", f"{w*1e3:.2f} ms (warm start of the same build)", "<= +2 ms",
        met(added <= 2.0, f"+{added:.2f} ms ({f/w:.2f}x)"))


def run_until_replaced(exe, env):
    """Runs `exe` (an update of itself) to completion: (seconds until its
    path names another file, the installed build, or None; seconds to its
    exit; peak RSS in KiB, from GNU time)."""
    rss_file = os.path.join(WORK, "rss.txt")
    before = os.stat(exe).st_ino
    installed = None
    start = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file, exe], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        if installed is None and os.stat(exe).st_ino != before:
            installed = time.perf_counter() - start
        time.sleep(0.001)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {exe}")
    if installed is None and os.stat(exe).st_ino != before:
        installed = elapsed
    with open(rss_file) as f:
        return installed, elapsed, int(f.read().split()[-1])


def inspect_against(new, old):
    out = subprocess.run([TOOLS, "inspect", new, "--against", old, "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def same_bytes(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as f, open(b, "rb") as g:
        while True:
            x, y = f.read(1 << 20), g.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def bench_big_cold():
    size_mb = 128 if QUICK else 1024
    app = os.path.join(WORK, "gigapp")
    os.makedirs(os.path.join(app, "bin"))
    shutil.copy("/bin/true", os.path.join(app, "bin", "app"))
    rng = random.Random(3)
    chunk = rng.randbytes(1 << 20)
    for i in range(size_mb // 64):
        with open(os.path.join(app, f"part{i:02}.bin"), "wb") as f:
            for j in range(64):
                f.write(chunk[j:] + chunk[:j])
    exe = os.path.join(WORK, "gig.bin")
    sh(f"'{TOOLS}' pack '{app}' --entry bin/app --name gig --level 1 -o '{exe}' 2>/dev/null")
    env = dict(os.environ, ONEFILE_CACHE_DIR=os.path.join(WORK, "cache-gig"))
    secs, kib = run_measured([exe], env=env, rss=True)
    row(f"cold start peak RSS ({size_mb} MiB payload)", f"{kib/1024:.1f} MiB", f"{secs:.1f} s to unpack", "< 64 MiB", f"{kib/1024:.1f} MiB")
    for path in (app, env["ONEFILE_CACHE_DIR"]):
        shutil.rmtree(path, ignore_errors=True)
    os.remove(exe)
    stub = os.path.getsize(STUB)
    row("stub size (stripped)", f"{stub:,} B", "2,097,152 B", "<= 2 MiB", f"{stub/2097152:.3f} of the budget")



class StalledHost:
    """A host on loopback that accepts connections, reads, and never
    answers (a captive portal, a dropping firewall): until `stop`."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.stopped = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def stop(self):
        self.stopped = True
        self.sock.close()
        for conn in self.held:
            conn.close()


def launch_and_eof(exe, env):
    """Runs exe as `exe | cat` would: returns (seconds until its stdout's
    end of file, seconds until the launcher exited)."""
    start = time.perf_counter()
    proc = subprocess.Popen([exe], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.read()
    eof = time.perf_counter() - start
    if proc.wait() != 0:
        raise SystemExit(f"failed: {exe}")
    return eof, time.perf_counter() - start


def bench_stalled_host():
    print("7. launch against a stalled update host", flush=True)
    work = os.path.join(WORK, "stalled")
    app = os.path.join(work, "app")
    os.makedirs(os.path.join(app, "bin"))
    shutil.copy("/bin/true", os.path.join(app, "bin", "app"))
    host = StalledHost()
    spec = f"http://127.0.0.1:{host.port}/{{VERSION}}/update.toml"
    runs = 7 if QUICK else 15
    builds = [("onefile", BIN)]
    baseline = os.environ.get("BASELINE_BIN_DIR")
    if baseline:
        builds.append(("before", os.path.abspath(baseline)))
    try:
        for label, bin_dir in builds:
            tools = os.path.join(bin_dir, "payload-tools")
            stub = os.path.join(bin_dir, "bootstrap")
            cache = os.path.join(work, f"cache-{label}")
            env = dict(os.environ, ONEFILE_CACHE_DIR=cache)
            env.pop("AUTO_UPDATE_DEBUG", None)
            exes = {}
            for kind, extra in (("updates", ["--update-url-spec", spec]), ("plain", [])):
                exe = os.path.join(work, f"{label}-{kind}.bin")
                name = f"tiny-{kind}"
                subprocess.run(
                    [tools, "pack", app, "--entry", "bin/app", "--name", name, "--stub", stub, "-o", exe] + extra,
                    check=True, stdout=subprocess.DEVNULL,
                )
                exes[kind] = (exe, name)
                launch_and_eof(exe, env)  # unpack once: warm launches from here

            def forget_checks(_case):
                # Every launch meets the stalled host, as the first one
                # after a check interval or backoff does.
                folder = os.path.join(cache, exes["updates"][1])
                for entry in os.listdir(folder) if os.path.isdir(folder) else []:
                    if entry.startswith(".update-check"):
                        os.remove(os.path.join(folder, entry))

            results = {name: [] for name in exes}
            for _ in range(runs):
                for kind, (exe, _name) in exes.items():
                    forget_checks(kind)
                    results[kind].append(launch_and_eof(exe, env))
            eof = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
            done = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
            for what, t in (("launch", done), ("`app` piped to `cat`, end of file", eof)):
                over = (t["updates"] - t["plain"]) * 1e3
                ratio = t["updates"] / t["plain"]
                goal = "<= +50 ms" if label == "onefile" else "(before)"
                row(
                    f"{what}, stalled host ({label})",
                    f"{t['updates'] * 1e3:.1f} ms",
                    f"{t['plain'] * 1e3:.1f} ms without updates",
                    goal,
                    met(over <= 50 or label != "onefile", f"+{over:.1f} ms, {ratio:.2f}x"),
                )
    finally:
        host.stop()
    bench_background_download(work)


def bench_background_download(work):
    """A launch whose app exits while a slow download runs (packed with
    `--update-exit-wait 0`: the launcher waits for nothing): the background
    updater installs it afterwards."""
    site = os.path.join(work, "site")
    nginx_work = os.path.join(work, "nginx")
    os.makedirs(nginx_work)
    os.makedirs(site)
    port, stop = start_nginx(site, nginx_work, "limit_rate 4m;")
    app = os.path.join(work, "app-dl")
    os.makedirs(os.path.join(app, "bin"))
    shutil.copy("/bin/true", os.path.join(app, "bin", "app"))
    spec = f"http://127.0.0.1:{port}/{{VERSION}}/update.toml"
    builds = {}
    for version in ("1.0", "1.1"):
        if version == "1.1":
            write(os.path.join(app, "data.bin"), os.urandom(8 << 20))
        out = os.path.join(site, version, "tiny.bin")
        toml = os.path.join(site, version, "update.toml")
        subprocess.run(
            [TOOLS, "pack", app, "--entry", "bin/app", "--name", "tiny", "--version", version,
             "--update-url-spec", spec, "--auto-update-toml-file", toml, "--update-exit-wait", "0",
             "-o", out],
            check=True, stdout=subprocess.DEVNULL,
        )
        builds[version] = out
    shutil.copy(os.path.join(site, "1.1", "update.toml"), os.path.join(site, "1.0", "update.toml"))
    try:
        exe = os.path.join(work, "user", "tiny.bin")
        os.makedirs(os.path.dirname(exe))
        shutil.copy(builds["1.0"], exe)
        env = dict(os.environ, ONEFILE_CACHE_DIR=os.path.join(work, "cache-dl"))
        env.pop("AUTO_UPDATE_DEBUG", None)
        _, launch = launch_and_eof(exe, env)
        start = time.perf_counter()
        while not same_bytes(exe, builds["1.1"]) and time.perf_counter() - start < 120:
            time.sleep(0.05)
        installed = same_bytes(exe, builds["1.1"])
        after = time.perf_counter() - start
        row(
            "slow download (8 MB at 4 MB/s, `--update-exit-wait 0`), app exits at once",
            f"launch {launch * 1e3:.0f} ms; installed {after:.1f} s later" if installed else "not installed",
            "-",
            "installed in the background",
            met(installed, "installed" if installed else "missing"),
        )
    finally:
        stop()


def main():
    for tool in (TOOLS, STUB):
        if not os.path.exists(tool):
            raise SystemExit(f"{tool} is missing: run `make build` first")
    for cmd in ("zstd", "tar", "curl", "/usr/bin/time", NGINX):
        if not shutil.which(cmd):
            raise SystemExit(f"{cmd} is missing: run `make deps`")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    print(f"onefile benchmarks ({'quick' if QUICK else 'full'}), {os.cpu_count()} cores", flush=True)
    started = time.time()
    cases = [bench_tree, bench_packed_size, bench_incremental, bench_update, bench_big_cold,
             bench_stalled_host]
    only = os.environ.get("BENCH_ONLY")
    for case in cases:
        if not only or case.__name__ == only:
            case()
    print(f"\n| case | onefile | baseline | goal | result |\n|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    print(f"\n({time.time() - started:.0f} s)")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
