"""What `make bench` prints once it is done: a table of every phase's figures (name, value, how it was
measured) and the one-line summary the issues and CI read (`ratio_vs_bare_faust=… scale_2w=… …`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = tuple[str, str, str]
Result = dict[str, Any]


def summary_table(r: Result) -> str:
    sections: tuple[Callable[[Result], list[Row]], ...] = (
        _throughput, _latency, _scaling, _memory, _in_process, _live_identity, _checks)
    rows = [row for section in sections for row in section(r)]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{width[0]}}  {b:>{width[1]}}  {c}" for a, b, c in rows]
    rule = "-" * min(120, max(len(line) for line in lines))
    return "\n".join([rule, *lines, rule])


def last_line(r: Result) -> str:
    """The run in one line; a phase that did not run prints nan."""
    nan = float("nan")

    def figure(value: float | None) -> float:
        return nan if value is None else value

    serial = r.get("serial_share", {})
    return (f"ratio_vs_bare_faust={r['ratio_vs_bare_faust']:.2f} "
            f"p99_latency_s={figure(r.get('latency', {}).get('p99_s')):.2f} "
            f"p99_shuffled_s={figure(r.get('latency_shuffled', {}).get('p99_s')):.2f} "
            f"scale_2w={r.get('scale_2w', nan):.2f} "
            f"scale_2w_cpu_bound={r.get('scale_2w_bound', {}).get('at_spent_cpu', nan):.2f} "
            f"scale_2w_split={r.get('scale_2w_split', nan):.2f} "
            f"serial_share={serial.get('serial_share', nan):.4f} "
            f"serial_ceiling_eps={serial.get('serial_ceiling_eps', nan):.0f}")


def phase_checks(r: Result) -> list[bool | None]:
    """Each checked phase's rows == unique valid events; None for a phase cut at its limit (not checked)."""
    return [v["check"]["ok"] for v in r.values() if isinstance(v, dict) and "check" in v]


def cpu_note(cpu: dict[str, float], *workers: str) -> str:
    parts = [f"{w.rsplit('-', 1)[-1]} {cpu.get(w, 0):.1f}s" for w in workers if w in cpu]
    parts += [f"kafka {cpu.get('kafka', 0):.1f}s", f"clickhouse {cpu.get('clickhouse', 0):.1f}s",
              f"other {cpu.get('other_processes', 0):.1f}s", f"wall {cpu.get('wall', 0):.1f}s"]
    return ", ".join(parts)


def _incomplete(phase: Result) -> str:
    return " INCOMPLETE" if phase.get("incomplete") else ""


def _throughput(r: Result) -> list[Row]:
    bare, one = r["bare_faust"], r["throughput_1w"]
    rows = [("code under test", r["code_under_test"], f"git {r['machine']['git']}"),
            ("records (unique valid)", f"{one['records']:,} ({one['unique_valid']:,})",
             f"{one['customers']:,} customers, 5% duplicates, mixed JSON/Avro"),
            ("bare Faust ceiling", f"{bare['events_per_s']:,.0f}/s",
             f"{bare['mode']} loop, decode only; cpu {cpu_note(bare['cpu_seconds'], 'bare_faust')}")]
    if "bare_faust_take" in r or "bare_faust_events" in r:
        other = r.get("bare_faust_take") or r["bare_faust_events"]
        rows.append((f"bare Faust ({other['mode']})", f"{other['events_per_s']:,.0f}/s", "diagnostic"))
    rows += [("pipeline, 1 worker", f"{one['events_per_s']:,.0f}/s" + _incomplete(one),
              f"consumed -> rows visible in {one['seconds']:.1f} s; "
              f"cpu {cpu_note(one['cpu_seconds'], 'throughput-worker0')}"),
             ("ratio vs bare Faust", f"{r['ratio_vs_bare_faust']:.2f}", "target >= 0.7")]
    return rows


def _latency(r: Result) -> list[Row]:
    rows: list[Row] = []
    if "latency" in r:
        lat = r["latency"]
        rows.append(("latency p50 / p95 / p99", f"{lat['p50_s']} / {lat['p95_s']} / {lat['p99_s']} s",
                     f"at {lat['achieved_rate']:,.0f}/s, {lat['events_measured']:,} events, poll "
                     f"{lat['poll_interval_s']} s; target p99 <= 2 s"))
    if "latency_shuffled" in r:
        lat = r["latency_shuffled"]
        rows.append(("latency, shuffled order", f"{lat['p50_s']} / {lat['p95_s']} / {lat['p99_s']} s",
                     f"at {lat['achieved_rate']:,.0f}/s, records in random order over their time span; "
                     "target p99 <= 1 s"))
    return rows


def _scaling(r: Result) -> list[Row]:
    rows: list[Row] = []
    if "throughput_2w" in r:
        two = r["throughput_2w"]
        rows += [("pipeline, 2 workers", f"{two['events_per_s']:,.0f}/s" + _incomplete(two),
                  f"cpu {cpu_note(two['cpu_seconds'], 'scaling-worker0', 'scaling-worker1')}"),
                 ("scale 2w / 1w", f"{r['scale_2w']:.2f}", "target >= 1.7 (2 cores shared with Kafka and ClickHouse)")]
        if "scale_2w_bound" in r:
            b = r["scale_2w_bound"]
            rows.append(("scale 2w bound: spent CPU / free split", f"{b['at_spent_cpu']:.2f} / {b['free_split']:.2f}",
                         "all cores busy at the pipeline CPU per event of the 2-worker / 1-worker phase "
                         f"(bench/cpu_budget.py); 2 workers kept {b['busy_cores']:.2f} cores busy, "
                         f"{b['extra_cpu']:+.0%} CPU per event"))
        if "fill_and_drain" in two:
            fd = two["fill_and_drain"]
            rows.append(("2 workers: fill / drain", f"{fd['fill_s']:.2f} / {fd['drain_s']:.2f} s",
                         f"first row after {fd['fill_s']:.2f} s, last row {fd['drain_s']:.2f} s after the last record "
                         f"consumed: both stages at work {fd['overlap_share']:.0%} of {fd['phase_s']:.1f} s "
                         "(bench/pipeline_timeline.py)"))
    if "scale_2w_split" in r:
        one_split, two_split = r["split_throughput_1w"], r["split_throughput_2w"]
        rows.append(("split resolver, 1 / 2 workers",
                     f"{one_split['events_per_s']:,.0f} / {two_split['events_per_s']:,.0f}/s",
                     f"CEM_SPLIT_PARTITIONS={r.get('split_partitions', '?')}: scale {r['scale_2w_split']:.2f}; "
                     f"cpu 2w {cpu_note(two_split['cpu_seconds'], 'split-2w-worker0', 'split-2w-worker1')}"))
    return rows


def _memory(r: Result) -> list[Row]:
    rows: list[Row] = []
    if "memory" in r:
        g = r["memory"]["rss_growth"]
        rows.append(("memory: peak RSS", f"{g['peak_rss_mb']:.0f} MB" + _incomplete(r["memory"]),
                     f"{r['memory']['records']:,} events / {r['memory']['customers']:,} customers; "
                     f"{g.get('mb_per_100k_events', '?')} MB per 100k events; "
                     f"~{g.get('peak_extrapolated_to_1m_events_mb', '?')} MB at 1M"))
    if "views" in r:
        v = r["views"]
        rows += [(f"view cost: {name.replace('_', ' ')}", f"{v['before_squash'][name]['ratio']:.2f}",
                  f"interactions / interaction_log, no squash; {v['interaction_rows']:,} rows, "
                  f"overrides {v['overrides_by_kind']}; target <= 2")
                 for name in ("per_channel_count", "customer_timeline", "customer_timeline_direct")]
    return rows


def _in_process(r: Result) -> list[Row]:
    rows: list[Row] = []
    if "kiosk" in r:
        hot = r["kiosk"]
        rows += [("kiosk: one device / own devices", f"{hot['ratio']:.2f}", f"{hot['visitors']:,} visitors, "
                  f"{hot['kiosk_s']:.2f} s vs {hot['own_devices_s']:.2f} s in-process; target <= 2"),
                 ("kiosk: one e-mail / own devices", f"{hot['email_ratio']:.2f}",
                  f"{hot['shared_email_s']:.2f} s; target <= 2")]
    if "collector" in r:
        c = r["collector"]
        rows.append(("collector: batch posts", f"{c['requests_per_s']:,.0f}/s, {c['events_per_s']:,.0f} events/s",
                     f"{c['events_per_request']} events per post, {c['concurrency']} clients; p50 {c['p50_ms']} ms, "
                     f"p99 {c['p99_ms']} ms (200 = on Kafka)"))
    if "text_cost" in r:
        t = r["text_cost"]
        rows.append(("enrichment per event: before / with text",
                     f"{t['old_us_per_event']} / {t['old_and_text_us_per_event']} us",
                     f"x{t['ratio_to_old']}; +{t['added_us_per_text']} us per text ({t['with_text']:,} of "
                     f"{t['events']:,} events); a new text: VADER {t['vader_us_per_unique_text']} us, with text "
                     f"signals {t['vader_and_text_us_per_unique_text']} us"))
    if "alert_cost" in r:
        a = r["alert_cost"]
        rows.append(("resolver per event: without / with alerts",
                     f"{a['resolver_us_per_event']} / {a['resolver_and_alerts_us_per_event']} us",
                     f"x{a['ratio_to_resolver']} (budget 1.10); with ingest x{a['ratio_to_in_process']}; "
                     f"{a['alerts_raised']:,} alert revisions on {a['events']:,} events"))
    return rows + _identity_in_process(r)


def _identity_in_process(r: Result) -> list[Row]:
    rows: list[Row] = []
    if "serial_share" in r:
        s = r["serial_share"]
        rows.append(("serial share: events needing the owner", f"{s['serial_share']:.1%}",
                     f"owner {s['owner_us_per_owner_event']} us per such event, partitionable "
                     f"{s['partitioned_us_per_event']} us per event; serial ceiling {s['serial_ceiling_eps']:,}/s; "
                     "projected " + ", ".join(f"{p['partitions']}p {p['projected_eps']:,}/s"
                                              for p in s["projection"]["simulated"])))
    if "split_stages" in r:
        t = r["split_stages"]
        rows.append(("split stages (4 fronts, 4 partitions): owner asked about", f"{t['serial_share']:.1%}",
                     f"owner {t['owner_us_per_request']} us per request, serial ceiling {t['serial_ceiling_eps']:,}/s;"
                     f" front {t['front_us_per_event']} + partition {t['partition_us_per_event']} us per event vs the "
                     f"single resolver's {t['single_resolver_us_per_event']}; {t['handoffs']:,} hand-offs; sessions "
                     "and journeys "
                     + ("equal" if t["sessions_and_journeys_equal_the_single_resolvers"] else "DIFFER")))
    return rows


def _live_identity(r: Result) -> list[Row]:
    """What the one-worker phase's resolver measured of itself (its metrics)."""
    live = [w["metrics"] for w in r["throughput_1w"].get("per_worker", {}).values()
            if "live_owner_share" in w["metrics"]]
    if not live:
        return []
    m = live[0]
    rows = [("live share needing the owner", f"{m['live_owner_share']:.1%}",
             f"of {m['identity_events_attributed']:,.0f} events the pipeline attributed (cem_identity_events_total)"
             + (f"; a front would have sent {m['front_owner_share']:.1%} to the owner (replica on)"
                if "front_owner_share" in m else ""))]
    if "live_serial_ceiling_eps" in m:
        rows.append(("live owner cost and serial ceiling", f"{m['live_serial_ceiling_eps']:,.0f}/s",
                     f"the graph's CPU {m['live_owner_us_per_owner_event']} us per event needing the owner "
                     "(cem_identity_graph_seconds_total)"))
    if "resolver_ceiling_eps" in m:
        rows.append(("live single-resolver cap", f"{m['resolver_ceiling_eps']:,.0f}/s",
                     f"the resolver's CPU {m['resolver_cpu_us_per_event']} us per event resolved: resolve "
                     f"{m['resolver_cpu_s_resolve']}s, columns {m['resolver_cpu_s_columns']}s, insert "
                     f"{m['resolver_cpu_s_insert']}s, state {m['resolver_cpu_s_state']}s "
                     "(cem_resolver_cpu_seconds_total)"))
    return rows


def _checks(r: Result) -> list[Row]:
    checks = phase_checks(r)
    done = [c for c in checks if c is not None]
    rows = [("self-check rows == unique valid", ("OK" if all(done) else "FAILED") if done else "n/a",
             f"{len(done)} phases checked" + (f", {len(checks) - len(done)} INCOMPLETE (not checked)"
                                              if len(done) < len(checks) else ""))]
    if "latency_skipped" in r:
        rows.append(("latency", "skipped", r["latency_skipped"]))
    machine = r["machine"]
    rows.append(("load average start / end", f"{machine['load_average_at_start']} / {r.get('load_average_at_end')}",
                 f"{machine['cores']} cores"))
    return rows
