#!/usr/bin/env python3
"""`payload-tools stats` over a large generated access log: its speed and
peak memory against baselines doing the same reading (docs/benchmarks.md,
"Access log stats").

Writes a `combined` log of STATS_LOG_MIB MiB (default 1024) into a fresh
temporary folder, spread over 30 days: updater checks (200 and 304) from
ten versions, full builds and ranges, reports of every event, browsers,
and a few hostile lines. Then, each under `/usr/bin/time -v` (peak RSS,
wall time):

  - `payload-tools stats --json LOG`;
  - `awk` counting manifest checks per day and User-Agent version (the
    first table of `stats`, nothing else): what one would script by hand;
  - `wc -l LOG`: the cost of reading the bytes at all;
  - the same log gzip-compressed: `stats --json LOG.gz` against
    `gzip -dc LOG.gz | wc -l`.

Checks that `stats` counted every check the generator wrote, prints a
table, and deletes the folder. Environment: BIN_DIR (default
target/release), STATS_LOG_MIB.
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

BIN = os.path.abspath(os.environ.get("BIN_DIR", "target/release"))
TOOLS = os.path.join(BIN, "payload-tools")
SIZE = int(os.environ.get("STATS_LOG_MIB", "1024")) << 20
DAYS = 30
VERSIONS = [f"1.{n}" for n in range(10)]

AWK = r'''
index($7, ".toml") && $0 ~ /"onefile\/[^ ]+ [^ \/]+\/[^ ]+ \(/ {
    day = substr($4, 2, 11)
    match($0, /"onefile\/[^ ]+ [^ \/]+\/[^ ]+ \(/)
    agent = substr($0, RSTART, RLENGTH)
    n = split(agent, parts, "/")
    version = substr(parts[3], 1, length(parts[3]) - 2)
    checks[day " " version]++
}
END { for (k in checks) print k, checks[k] }
'''


def block(rng, day):
    """About 1 MiB of lines of `day` (dd/Mon/yyyy), and how many checks
    by onefile updaters it holds."""
    lines = []
    checks = 0
    size = 0
    while size < 1 << 20:
        version = rng.choice(VERSIONS)
        agent = f"onefile/0.1.0 demo/{version} (linux; x86_64)"
        ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
        time = f"[{day}:{rng.randrange(24):02}:{rng.randrange(60):02}:{rng.randrange(60):02} +0000]"
        kind = rng.random()
        if kind < 0.80:
            status, sent = (304, 0) if rng.random() < 0.7 else (200, 612)
            request = f"GET /{version}/update.toml HTTP/1.1"
            checks += 1
        elif kind < 0.88:
            status, sent, request = 206, rng.randrange(1, 1 << 20), "GET /1.9/demo.bin HTTP/1.1"
        elif kind < 0.90:
            status, sent, request = 200, 2_500_000, "GET /1.9/demo.bin HTTP/1.1"
        elif kind < 0.97:
            event = rng.choice(["event=updated", "event=rolled-back&reason=crash",
                                "event=refused&reason=signature", "event=failed&reason=network"])
            status, sent = 404, 153
            request = f"GET /report?app=demo&from={version}&to=1.9&{event} HTTP/1.1"
        elif kind < 0.995:
            status, sent, request = 200, 615, "GET / HTTP/1.1"
            agent = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
        else:
            lines.append(f'{ip} - - {time} "\\x16\\x03\\x01\\x02\\x00" 400 157 "-" "-"\n')
            continue
        line = f'{ip} - - {time} "{request}" {status} {sent} "-" "{agent}"\n'
        lines.append(line)
        size += len(line)
    return "".join(lines), checks


def generate(path):
    rng = random.Random(15)
    blocks = SIZE >> 20
    per_day = max(1, blocks // DAYS)
    checks = 0
    with open(path, "w") as f:
        text, n = "", 0
        for i in range(blocks):
            day_index = min(i // per_day, DAYS - 1)
            day = f"{day_index + 1:02}/Nov/2026"
            if i % per_day == 0 or not text:
                text, n = block(rng, day)
            f.write(text)
            checks += n
    return checks


def timed(command, stdout=subprocess.DEVNULL, shell=False):
    """Runs `command` under /usr/bin/time -v; returns (seconds, peak RSS
    in KiB, stdout text when captured)."""
    wrapped = ["/usr/bin/time", "-v"] + (["sh", "-c", command] if shell else command)
    proc = subprocess.run(wrapped, stdout=stdout, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{command} failed:\n{proc.stderr[-2000:]}")
    elapsed = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    hours, minutes, seconds = elapsed.groups()
    wall = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return wall, rss, proc.stdout


def main():
    if not os.path.exists(TOOLS):
        raise SystemExit(f"{TOOLS} is missing: run `make build` first")
    work = tempfile.mkdtemp(prefix="onefile-stats-bench-")
    try:
        log = os.path.join(work, "access.log")
        checks = generate(log)
        size = os.path.getsize(log)
        mib = size / (1 << 20)
        print(f"log: {size:,} B, {checks:,} checks by updaters, {DAYS} days", flush=True)
        rows = []
        wall, rss, out = timed([TOOLS, "stats", "--json", log], stdout=subprocess.PIPE)
        counted = sum(d["checks_total"] for d in json.loads(out)["days"])
        if counted != checks:
            raise SystemExit(f"stats counted {counted} checks, the generator wrote {checks}")
        rows.append(("payload-tools stats --json", wall, rss))
        rows.append(("awk: checks per day and version", *timed(["awk", AWK, log])[:2]))
        rows.append(("wc -l", *timed(["wc", "-l", log])[:2]))
        subprocess.run(["gzip", "-1", "-k", log], check=True)
        gz = log + ".gz"
        gz_size = os.path.getsize(gz)
        os.remove(log)
        wall, rss, out = timed([TOOLS, "stats", "--json", gz], stdout=subprocess.PIPE)
        if sum(d["checks_total"] for d in json.loads(out)["days"]) != checks:
            raise SystemExit("stats counted other checks in the .gz")
        rows.append((f"payload-tools stats --json (.gz, {gz_size:,} B)", wall, rss))
        rows.append(("gzip -dc \\| wc -l", *timed(f"gzip -dc '{gz}' | wc -l", shell=True)[:2]))
        print(f"\n| {mib:.0f} MiB combined log | time | MiB/s of log | peak RSS |")
        print("|---|---|---|---|")
        for name, wall, rss in rows:
            print(f"| {name} | {wall:.2f} s | {mib / wall:.0f} | {rss / 1024:.1f} MiB |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
