"""Figures of pocketkey-org on loopback (docs/org.md, "Figures"): invites per second, listing
the inventory at 100 000 keys, server RSS idle; on SQLite and on PostgreSQL (two nodes).

Long form, by hand (counts and time bounded; prints one line per figure):

    cargo build -p pocketkey-org
    python3 tests/python/org_figures.py [--invites 1000] [--keys 100000] [--threads 4]

test_org.py's test_figures_short_form runs the same code with small counts in CI and checks
only what the figures count, never a time.
"""

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from org_db import PostgresDb, PostgresServer, SqliteDb  # noqa: E402


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _conn(base):
    host, port = base.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=60)


def _call(conn, method, path, key, body=None):
    headers = {"Authorization": f"Bearer {key}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def invites_per_second(org, count, threads):
    """`count` invites from `threads` clients, each on a keep-alive connection of its own,
    spread over the organisation's nodes. Returns (invites, seconds)."""
    done, errors = [], []

    def client(t):
        conn = _conn(org.nodes[t % len(org.nodes)][3])
        for i in range(t, count, threads):
            status, raw = _call(conn, "POST", "/api/v1/invites", org.api_key,
                                {"email": f"bench{i}@acme.example", "display_name": f"Bench {i}"})
            (done if status == 201 else errors).append((status, raw))
        conn.close()

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise AssertionError(f"{len(errors)} invites failed, first: {errors[0]}")
    return len(done), elapsed


def seed_keys(db, count):
    """`count` inventory rows written straight into the database (not through invites)."""
    if db.name == "postgres":
        db.rows("INSERT INTO keys (id, email, display_name, status, created_at) "
                "SELECT 'seed' || lpad(i::text, 8, '0'), 'seed' || i || '@acme.example', 'Seed ' || i, "
                "'active', '2026-01-01T00:00:00Z' FROM generate_series(1, %d) AS i" % count)
    else:
        import sqlite3

        con = sqlite3.connect(db.path)
        con.executemany(
            "INSERT INTO keys (id, email, display_name, status, created_at) VALUES (?, ?, ?, 'active', ?)",
            ((f"seed{i:08d}", f"seed{i}@acme.example", f"Seed {i}", "2026-01-01T00:00:00Z")
             for i in range(1, count + 1)))
        con.commit()
        con.close()


def list_inventory(org, limit=1000):
    """Pages through the whole inventory. Returns (keys, pages, seconds, first page ms, last page ms)."""
    conn = _conn(org.base)
    after, keys, pages, times = None, 0, 0, []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        status, raw = _call(conn, "GET", f"/api/v1/keys?limit={limit}" + (f"&after={after}" if after else ""),
                            org.api_key)
        times.append((time.perf_counter() - t) * 1000)
        assert status == 200, raw
        page = json.loads(raw)
        keys += len(page["keys"])
        pages += 1
        after = page["next_after"]
        if after is None:
            break
    elapsed = time.perf_counter() - start
    conn.close()
    return keys, pages, elapsed, times[0], times[-1]


def figures(org, invites, keys, threads, out=print):
    """Runs each figure on `org` and returns them; `out` gets one line per figure."""
    pids = [proc.pid for proc, *_ in org.nodes]
    result = {"backend": org.db.name, "nodes": len(pids)}
    result["rss_idle_start_kib"] = [rss_kib(p) for p in pids]
    n, secs = invites_per_second(org, invites, threads)
    result["invites"], result["invites_per_s"] = n, n / secs
    out(f"{org.db.name}: {n} invites by {threads} clients over {len(pids)} node(s) in {secs:.2f} s: "
        f"{n / secs:.0f} invites/s")
    seed_keys(org.db, keys)
    total, pages, secs, first_ms, last_ms = list_inventory(org)
    result.update(listed=total, pages=pages, list_s=secs, first_page_ms=first_ms, last_page_ms=last_ms)
    out(f"{org.db.name}: listing {total} keys in {pages} pages of 1000: {secs:.2f} s "
        f"(first page {first_ms:.0f} ms, last page {last_ms:.0f} ms)")
    result["rss_idle_after_kib"] = [rss_kib(p) for p in pids]
    out(f"{org.db.name}: RSS idle per node: {result['rss_idle_start_kib']} KiB at start, "
        f"{result['rss_idle_after_kib']} KiB after the runs")
    return result


def main():
    from test_org import Org  # the same organisation + serve processes as the tests

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invites", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    server = None
    try:
        for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
            with tempfile.TemporaryDirectory(prefix="pk-org-figures-") as tmp:
                tmp = Path(tmp)
                if backend == "postgres":
                    server = server or PostgresServer()
                    db = PostgresDb(server)
                else:
                    db = SqliteDb(tmp / "state")
                org = Org(tmp, db=db)
                try:
                    figures(org, args.invites, args.keys, args.threads)
                finally:
                    org.stop()
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
