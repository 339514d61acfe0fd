"""``python -m bench``: run the benchmark, print the table, write bench/results/latest.json."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import coldstart, imapside, suggest_cost, tools
from bench.mailgen import MailFactory, generate
from bench.meter import Meter
from bench.ours import OurAccount, moto_in_process, since_anchor, sink_sync
from bench.report import Figure, machine_info, table, write_json
from bench.sink import NullStore
from mailsync_local.dovecot import Dovecot

RESULTS = Path(__file__).resolve().parent / "results"
DELTA = 10  # new mails, flag changes, moves and deletions of the small delta
NOOP_RUNS = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--sizes", default="1000,10000", help="folder sizes, comma-separated")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: 100 mails; only (a), (d), (e), no-op delta, cost per mail, cold start",
    )
    p.add_argument("--skip-tools", action="store_true", help="skip (b) mbsync and (c) offlineimap")
    p.add_argument("--skip-api", action="store_true", help="skip the API phase")
    p.add_argument(
        "--no-build",
        dest="build",
        action="store_false",
        help="skip infra/sam-build.sh (artefact sizes then come from an existing .aws-sam/build, if any)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="pyinstrument profiles of (d) and (e) on the largest size (slows them down)",
    )
    p.add_argument(
        "--skip-events", action="store_true", help="skip mailbox change -> tenant webhook (issue 15)"
    )
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    a = p.parse_args(argv)
    a.sizes = [100] if a.quick else [int(s) for s in a.sizes.split(",") if s.strip()]
    if a.quick:
        a.skip_tools = a.skip_api = a.skip_events = True  # the e2e tests cover those paths
        a.build = False
    return a


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mutate(
    d: Dovecot,
    user: str,
    factory: MailFactory,
    uids: list[int],
    seen: dict[int, bool],
    start: int,
    new: int = DELTA,
    flags: int = DELTA,
    moves: int = DELTA,
    deletes: int = DELTA,
) -> int:
    """New mails, flag flips, moves to Archive and deletions on disjoint UIDs picked from ``start``."""
    from datetime import UTC, datetime

    if new:
        now = datetime.now(UTC).replace(microsecond=0)
        mails = [factory.make(now) for _ in range(new)]
        imapside.fill(d, user, "INBOX", mails)
    pool = [u for u in uids[start:] if u in seen]
    step = max(1, len(pool) // (flags + moves + deletes + 1))
    picked = pool[::step][: flags + moves + deletes]
    f, m, x = picked[:flags], picked[flags : flags + moves], picked[flags + moves :]
    if f:
        for s in (True, False):
            group = [u for u in f if seen[u] is s]
            if group:
                d.set_seen(user, "INBOX", group, not s)
            for u in group:
                seen[u] = not s
    if m:
        d.move(user, "INBOX", m, "Archive")
    if x:
        d.delete(user, "INBOX", x)
    for u in (*m, *x):
        seen.pop(u, None)
    return len(picked)


def run_size(n: int, args: argparse.Namespace, d: Dovecot, meter: Meter) -> dict[str, Any]:
    r: dict[str, Any] = {"size": n}
    t = time.perf_counter()
    mails = generate(n, args.seed, anchor=since_anchor())
    r["generate_seconds"] = time.perf_counter() - t
    r["mail_bytes"] = sum(len(m.raw) for m in mails)
    r["attachments"] = sum(1 for m in mails if b"multipart/mixed" in m.raw)
    r["replies"] = sum(1 for m in mails if b"\r\nIn-Reply-To:" in m.raw)
    user, pw = d.new_user(f"bench{n}")
    t = time.perf_counter()
    uids = imapside.fill(d, user, "INBOX", mails)
    r["fill_seconds"] = time.perf_counter() - t
    seen = {u: m.seen for u, m in zip(uids, mails, strict=True)}
    log(f"{n}: {r['mail_bytes'] / 1e6:.0f} MB generated and appended in {r['fill_seconds']:.0f} s")

    # 1. initial sync
    r["a"] = min((imapside.raw_fetch(d, user) for _ in range(2)), key=lambda x: x["seconds"])
    log(f"{n}: (a) raw {r['a']['seconds']:.2f} s")
    r["a2"] = min((imapside.raw_fetch(d, user, ours=True) for _ in range(2)), key=lambda x: x["seconds"])
    log(f"{n}: (a') raw, our reader {r['a2']['seconds']:.2f} s")
    mb = off = None
    if not args.skip_tools:
        mb = tools.Mbsync(d.host, d.port, user, pw)
        r["b"] = mb.sync()
        log(f"{n}: (b) mbsync {r['b']['seconds']:.2f} s")
        off = tools.OfflineImap(d.host, d.port, user, pw)
        r["c"] = off.sync()
        log(f"{n}: (c) offlineimap {r['c']['seconds']:.2f} s")
    largest = n == max(args.sizes)
    prof = str(RESULTS / f"profile-{{}}-{n}.txt") if args.profile and largest else None
    ours = OurAccount(d, user, pw, meter)
    r["d"] = ours.sync(profile=prof and prof.format("d-initial"))
    r["d"]["commands"] = len(r["d"]["commands"])
    log(f"{n}: (d) ours+moto {r['d']['seconds']:.2f} s")
    sink = NullStore()
    r["e"] = sink_sync(d, user, pw, sink, profile=prof and prof.format("e-initial"))
    r["e"].pop("store")
    log(f"{n}: (e) ours+sink {r['e']['seconds']:.2f} s")

    # 2. no-op delta
    noop: dict[str, Any] = {}
    if mb and off:
        noop["b"] = min((mb.sync() for _ in range(NOOP_RUNS)), key=lambda x: x["seconds"])
        noop["c"] = min((off.sync() for _ in range(NOOP_RUNS)), key=lambda x: x["seconds"])
    runs = [ours.sync(profile=prof and i == 0 and prof.format("d-noop")) for i in range(NOOP_RUNS)]
    noop["d"] = min(runs, key=lambda x: x["seconds"])
    noop["d"]["commands_per_run"] = [len(x["commands"]) for x in runs]
    noop["d"]["wire_bytes_per_run"] = [x["wire_bytes"] for x in runs]
    sink_noop = [sink_sync(d, user, pw, sink) for _ in range(NOOP_RUNS)]
    noop["e"] = min(sink_noop, key=lambda x: x["seconds"])
    noop["e"].pop("store")
    r["noop"] = noop
    log(f"{n}: no-op ours {noop['d']['seconds']:.3f} s, {noop['d']['commands']}")

    # 3. small delta
    factory = MailFactory(args.seed + n, since_anchor(0))
    mutate(d, user, factory, uids, seen, start=0)
    delta: dict[str, Any] = {}
    if mb and off:
        delta["b"] = mb.sync()
        delta["c"] = off.sync()
    delta["d"] = ours.sync()
    delta["e"] = sink_sync(d, user, pw, sink)
    delta["e"].pop("store")
    r["delta"] = delta
    log(f"{n}: small delta ours {delta['d']['seconds']:.3f} s {delta['d']['result']}")

    # 4. cost per mail in the steady state (ours only)
    cost: dict[str, Any] = {}
    start = len(uids) // 3
    mutate(d, user, factory, uids, seen, start, new=DELTA, flags=0, moves=0, deletes=0)
    cost["new10"] = ours.sync()
    mutate(d, user, factory, uids, seen, start, new=1, flags=0, moves=0, deletes=0)
    cost["new1"] = ours.sync()
    mutate(d, user, factory, uids, seen, start, new=0, flags=DELTA, moves=0, deletes=0)
    cost["flag10"] = ours.sync()
    mutate(d, user, factory, uids, seen, start + len(uids) // 4, new=0, flags=0, moves=DELTA, deletes=0)
    cost["move10"] = ours.sync()
    mutate(d, user, factory, uids, seen, start + len(uids) // 2, new=0, flags=0, moves=0, deletes=DELTA)
    cost["delete10"] = ours.sync()
    cost["noop"] = ours.sync()
    for v in cost.values():
        v["commands"] = len(v["commands"])
    r["cost"] = cost

    # 5. suggestions for the unassigned: a page of 50 with its top suggestions
    r["suggest"] = suggest_cost.measure(meter, f"b{n}")
    log(f"{n}: suggestions page of {r['suggest']['page']}: {r['suggest']['aws']['ddb_read_requests']} reads")
    if mb:
        mb.cleanup()
    if off:
        off.cleanup()
    r["dovecot_user"] = (user, pw)
    return r


def figures(res: dict[str, Any], args: argparse.Namespace) -> list[Figure]:
    F: list[Figure] = []
    sizes = res["sizes"]
    big = str(max(args.sizes))
    for n, r in sizes.items():
        a, d, e = r["a"], r["d"], r["e"]
        rate_a, rate_e, rate_d = n_rate(r, a), n_rate(r, e), n_rate(r, d)
        F.append(Figure(f"initial.a.{n}", f"initial {n}: (a) raw imapclient", rate_a, "mail/s"))
        if "b" in r:
            F.append(
                Figure(
                    f"initial.b.{n}",
                    f"initial {n}: (b) mbsync",
                    n_rate(r, r["b"]),
                    "mail/s",
                    rate_a,
                    "(a)",
                    rate_ratio(r["b"], a),
                )
            )
            F.append(
                Figure(
                    f"initial.c.{n}",
                    f"initial {n}: (c) offlineimap3",
                    n_rate(r, r["c"]),
                    "mail/s",
                    rate_a,
                    "(a)",
                    rate_ratio(r["c"], a),
                )
            )
        F.append(
            Figure(
                f"initial.a2.{n}",
                f"initial {n}: (a') raw, engine's FETCH reader",
                n_rate(r, r["a2"]),
                "mail/s",
                rate_a,
                "(a)",
                rate_ratio(r["a2"], a),
            )
        )
        F.append(
            Figure(
                f"initial.e_over_a.{n}",
                f"initial {n}: (e) engine + no-op sink",
                rate_e,
                "mail/s",
                rate_a,
                "(a)",
                rate_ratio(e, a),
                ">= 0.8x",
                rate_ratio(e, a) >= 0.8,
            )
        )
        F.append(
            Figure(
                f"initial.e_over_a2.{n}",
                f"initial {n}: (e) vs (a') (engine share)",
                rate_e,
                "mail/s",
                n_rate(r, r["a2"]),
                "(a')",
                rate_ratio(e, r["a2"]),
            )
        )
        if "b" in r:
            F.append(
                Figure(
                    f"initial.e_over_b.{n}",
                    f"initial {n}: (e) vs mbsync",
                    rate_e,
                    "mail/s",
                    n_rate(r, r["b"]),
                    "(b) mbsync",
                    rate_ratio(e, r["b"]),
                )
            )
            F.append(
                Figure(
                    f"initial.d_over_b.{n}",
                    f"initial {n}: (d) engine + store (moto)",
                    rate_d,
                    "mail/s",
                    n_rate(r, r["b"]),
                    "(b) mbsync",
                    rate_ratio(d, r["b"]),
                    ">= 1x",
                    rate_ratio(d, r["b"]) >= 1.0,
                )
            )
        else:
            F.append(
                Figure(
                    f"initial.d.{n}",
                    f"initial {n}: (d) engine + store (moto)",
                    rate_d,
                    "mail/s",
                    rate_a,
                    "(a)",
                    rate_ratio(d, a),
                )
            )
        nd = r["noop"]["d"]
        if "b" in r["noop"]:
            ratio = r["noop"]["b"]["seconds"] / nd["seconds"]
            F.append(
                Figure(
                    f"noop.d_vs_b.{n}",
                    f"no-op {n}: (d) ours",
                    nd["seconds"] * 1000,
                    "ms",
                    r["noop"]["b"]["seconds"] * 1000,
                    "(b) mbsync",
                    ratio,
                    ">= 10x" if n == int(big) else "",
                    (ratio >= 10) if n == int(big) else None,
                )
            )
            F.append(
                Figure(f"noop.c.{n}", f"no-op {n}: (c) offlineimap3", r["noop"]["c"]["seconds"] * 1000, "ms")
            )
        else:
            F.append(Figure(f"noop.d.{n}", f"no-op {n}: (d) ours", nd["seconds"] * 1000, "ms"))
        F.append(
            Figure(
                f"noop.e.{n}",
                f"no-op {n}: (e) engine + sink",
                r["noop"]["e"]["seconds"] * 1000,
                "ms",
                r["noop"]["b"]["seconds"] * 1000 if "b" in r["noop"] else None,
                "(b) mbsync" if "b" in r["noop"] else "",
                r["noop"]["b"]["seconds"] / r["noop"]["e"]["seconds"] if "b" in r["noop"] else None,
            )
        )
        F.append(
            Figure(
                f"noop.commands.{n}",
                f"no-op {n}: IMAP commands (ours)",
                len(nd["commands"]),
                "",
                target="O(1), same for every size",
                met=len(set(nd["commands_per_run"])) == 1 and len(nd["commands"]) <= 8,
            )
        )
        F.append(
            Figure(
                f"noop.wire.{n}",
                f"no-op {n}: bytes on the wire (ours)",
                nd["wire_bytes"],
                "B",
                target="< 2 KB",
                met=nd["wire_bytes"] < 2048,
            )
        )
        dd = r["delta"]["d"]
        if "b" in r["delta"]:
            F.append(
                Figure(
                    f"delta.d_vs_b.{n}",
                    f"small delta {n}: (d) ours",
                    dd["seconds"] * 1000,
                    "ms",
                    r["delta"]["b"]["seconds"] * 1000,
                    "(b) mbsync",
                    r["delta"]["b"]["seconds"] / dd["seconds"],
                )
            )
            F.append(
                Figure(
                    f"delta.c.{n}",
                    f"small delta {n}: (c) offlineimap3",
                    r["delta"]["c"]["seconds"] * 1000,
                    "ms",
                )
            )
        else:
            F.append(Figure(f"delta.d.{n}", f"small delta {n}: (d) ours", dd["seconds"] * 1000, "ms"))
        F.append(
            Figure(
                f"delta.e.{n}", f"small delta {n}: (e) engine + sink", r["delta"]["e"]["seconds"] * 1000, "ms"
            )
        )
        F.append(
            Figure(
                f"delta.commands.{n}",
                f"small delta {n}: IMAP commands / wire bytes (ours)",
                len(dd["commands"]),
                "",
                float(dd["wire_bytes"]),
                "bytes",
            )
        )
    r = sizes[big]
    c = r["cost"]
    wr = c["new10"]["aws"]["ddb_write_requests"] / DELTA
    F.append(
        Figure(
            "cost.write_requests_per_new_mail",
            "cost: DynamoDB write requests / new mail (10 per sync)",
            wr,
            "",
            target="<= 1.5",
            met=wr <= 1.5,
        )
    )
    init = r["d"]["aws"]
    F.append(
        Figure(
            "cost.write_requests_per_new_mail_initial",
            "cost: DynamoDB write requests / new mail (initial, batches)",
            init["ddb_write_requests"] / r["d"]["result"]["new"],
            "",
            target="<= 1.5",
            met=init["ddb_write_requests"] / r["d"]["result"]["new"] <= 1.5,
        )
    )
    F.append(
        Figure(
            "cost.write_requests_new1",
            "cost: DynamoDB write requests, sync with 1 new mail",
            c["new1"]["aws"]["ddb_write_requests"],
            "",
        )
    )
    F.append(
        Figure(
            "cost.wcu_per_new_mail",
            "cost: write units / new mail (initial)",
            init["wcu"] / r["d"]["result"]["new"],
            "WCU",
        )
    )
    F.append(
        Figure(
            "cost.wcu_per_new_mail_delta",
            "cost: write units / new mail (10 per sync)",
            c["new10"]["aws"]["wcu"] / DELTA,
            "WCU",
        )
    )
    F.append(
        Figure(
            "cost.rcu_per_new_mail",
            "cost: read units / new mail (10 per sync)",
            c["new10"]["aws"]["rcu"] / DELTA,
            "RCU",
        )
    )
    F.append(
        Figure(
            "cost.s3_puts_per_new_mail", "cost: S3 PUTs / new mail", c["new10"]["aws"]["s3_puts"] / DELTA, ""
        )
    )
    for k, label in (("flag10", "flag change"), ("move10", "moved mail"), ("delete10", "deleted mail")):
        a = c[k]["aws"]
        F.append(
            Figure(
                f"cost.{k}",
                f"cost: per {label}: DynamoDB write requests / WCU",
                a["ddb_write_requests"] / DELTA,
                "",
                a["wcu"] / DELTA,
                "WCU",
            )
        )
    F.append(
        Figure(
            "cost.s3_moved_deleted",
            "cost: S3 PUTs per moved / per deleted mail",
            c["move10"]["aws"]["s3_puts"] / DELTA,
            "",
            c["delete10"]["aws"]["s3_puts"] / DELTA,
            "deleted",
        )
    )
    F.append(
        Figure(
            "cost.noop_requests",
            "cost: no-op sync: DDB reads / writes",
            c["noop"]["aws"]["ddb_read_requests"],
            "",
            c["noop"]["aws"]["ddb_write_requests"],
            "writes",
        )
    )
    sg = r["suggest"]
    F.append(
        Figure(
            "cost.suggestions_page",
            f"cost: DDB requests, {sg['page']} unassigned + top suggestion (+1 auth)",
            sg["aws"]["ddb_read_requests"] + sg["aws"]["ddb_write_requests"],
            "",
            sg["aws"]["rcu"],
            "RCU",
            target="bounded, no Scan",
            met=sg["aws"]["ops"].get("Scan", 0) == 0 and sg["aws"]["ddb_write_requests"] == 0,
        )
    )
    F.append(
        Figure(
            "cost.suggestions_one",
            "cost: DDB requests, one mail's suggestions (+1 auth)",
            sg["single"]["aws"]["ddb_read_requests"] + sg["single"]["aws"]["ddb_write_requests"],
            "",
            sg["single"]["aws"]["rcu"],
            "RCU",
        )
    )
    cpu = r["e"]["cpu_seconds"] / r["e"]["new"] * 1000
    F.append(
        Figure(
            "cost.engine_cpu_per_1000",
            "cost: engine CPU s / 1,000 mails (sink)",
            cpu,
            "s",
            r["a"]["cpu_seconds"] / r["a"]["messages"] * 1000,
            "(a) CPU",
        )
    )
    F.append(
        Figure(
            "cost.store_cpu_per_1000",
            "cost: engine+moto CPU s / 1,000 mails",
            r["d"]["cpu_seconds"] / r["d"]["result"]["new"] * 1000,
            "s",
        )
    )
    for name, ct in res["cold_start"].items():
        if name == "artefacts":
            continue
        target = "< 300 ms, 0 clients" if name == "api" else ""
        met = (ct["import_ms"] < 300 and ct["clients"] == 0) if name == "api" else None
        F.append(
            Figure(
                f"cold.{name}",
                f"cold start: import functions/{name}/app.py",
                ct["import_ms"],
                "ms",
                target=target,
                met=met,
            )
        )
        F.append(
            Figure(
                f"cold.{name}.clients",
                f"cold start: boto3 clients at import ({name})",
                ct["clients"],
                "",
                target="0",
                met=ct["clients"] == 0,
            )
        )
    art = res["cold_start"]["artefacts"]
    if art.get("built"):
        for name in (*coldstart.FUNCTIONS, "layer"):
            F.append(
                Figure(
                    f"artefact.{name}", f"artefact: .aws-sam/build {name}", (art.get(name) or 0) / 1024, "KB"
                )
            )
    else:
        F.append(Figure("artefact", "artefact: not built (--no-build and no .aws-sam/build)", None))
    if "api" in res:
        api = res["api"]
        for k, label in (("threads", "GET /v1/threads"), ("message", "GET /v1/messages/{id}")):
            a = api[k]
            F.append(
                Figure(
                    f"api.{k}.p50",
                    f"API {label} p50, HTTP+moto ({api['mails']} mails, n={a['n']})",
                    a["p50_ms"],
                    "ms",
                )
            )
            F.append(Figure(f"api.{k}.p95", f"API {label} p95, HTTP+moto", a["p95_ms"], "ms"))
            F.append(
                Figure(
                    f"api.{k}.own",
                    f"API {label} p50 without storage time",
                    a["own_p50_ms"],
                    "ms",
                    a["own_p95_ms"],
                    "p95",
                )
            )
            q = api[k]["ddb_requests_per_call"]
            F.append(
                Figure(
                    f"api.{k}.ddb", f"API {label}: DynamoDB requests / call", q, "", target="<= 3", met=q <= 3
                )
            )
    ev = res.get("events")
    if ev:
        g, i = ev["gmail_push_s"], ev["imap_poll_s"]
        F.append(
            Figure(
                "events.gmail_push.p50",
                "Gmail push -> tenant webhook p50 (p95 as reference)",
                g["p50"],
                "s",
                g["p95"],
                "p95",
                target="< 2 s",
                met=g["p50"] < 2,
            )
        )
        F.append(
            Figure(
                "events.imap_poll.p50",
                f"IMAP change -> tenant webhook p50, polled every {ev['poll_seconds']} s (p95 as reference)",
                i["p50"],
                "s",
                i["p95"],
                "p95",
            )
        )
    return F


def n_rate(r: dict[str, Any], x: dict[str, Any]) -> float:
    return r["size"] / x["seconds"]


def rate_ratio(x: dict[str, Any], ref: dict[str, Any]) -> float:
    return ref["seconds"] / x["seconds"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so Dovecot, moto and the runner are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.perf_counter()
    if not args.skip_tools:
        tools.ensure_installed(["mbsync", "offlineimap"])
    res: dict[str, Any] = {
        "machine": machine_info(),
        "args": {"sizes": args.sizes, "quick": args.quick, "profile": args.profile, "seed": args.seed},
    }
    if not args.skip_tools:
        res["machine"]["mbsync"] = tools.version("mbsync")
        res["machine"]["offlineimap"] = tools.version("offlineimap")
    meter = Meter().install()
    res["sizes"] = {}
    with Dovecot() as d:
        with moto_in_process():
            for n in args.sizes:
                res["sizes"][str(n)] = run_size(n, args, d, meter)
        log("cold start")
        res["cold_start"] = {name: coldstart.import_time(name) for name in coldstart.FUNCTIONS}
        res["cold_start"]["artefacts"] = coldstart.artefact_sizes(build=args.build)
        if not args.skip_api:
            from bench.api import measure_api

            big = res["sizes"][str(max(args.sizes))]
            user, pw = big.pop("dovecot_user")
            st = [d.status(user, f) for f in ("INBOX", "Archive")]
            expected = sum(int(s[b"MESSAGES"]) for s in st)
            log(f"API: runner syncs {expected} mails")
            res["api"] = measure_api(d, user, pw, expected, meter)
    if not args.skip_events:
        from bench.push_latency import measure_push_latency

        log("events: mailbox change -> tenant webhook")
        res["events"] = measure_push_latency(samples=20)
    for r in res["sizes"].values():
        r.pop("dovecot_user", None)
    res["total_seconds"] = time.perf_counter() - t0
    figs = figures(res, args)
    write_json(args.out, res, figs)
    print(table(figs))
    print(
        f"\n{res['machine']['cpu']}, {res['machine']['cores']} cores, Python {res['machine']['python']}, "
        f"Dovecot {res['machine']['dovecot']}; {res['total_seconds']:.0f} s; JSON: {args.out}"
    )
    return 0
