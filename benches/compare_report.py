"""Medians of benches/compare.sh's runs as Markdown; firegate, HAProxy and the
hyper floor (the same HTTP stack doing nothing else) as
ratios to nginx's figure from the same run (absolute numbers on a shared
machine are noise, ratios much less so)."""

import statistics
import sys
from collections import defaultdict


def median(values):
    return statistics.median(values) if values else float("nan")


def main(results_path, latency_path):
    rows = defaultdict(dict)  # (config, mix) -> run -> (rps, cpu, rss)
    for line in open(results_path):
        config, mix, run, rps, cpu, rss = line.rstrip("\n").split("\t")
        rows[(config, mix)][run] = (float(rps), float(cpu), int(rss))
    lat = defaultdict(dict)  # config -> run -> (p50, p99)
    for line in open(latency_path):
        config, run, p50, p99, _codes = line.rstrip("\n").split("\t")
        lat[config][run] = (float(p50), float(p99))

    def ratio(config, mix, index):
        mine, base = rows.get((config, mix), {}), rows.get(("nginx", mix), {})
        return median([mine[r][index] / base[r][index]
                       for r in mine if r in base and base[r][index] > 0])

    runs = len({run for per in rows.values() for run in per})
    print(f"{runs} run(s); medians. CPU = proxy CPU seconds per 10k requests "
          "(utime+stime from /proc); ratio = this config / nginx, same run.\n")
    print("| config | mix | req/s | CPU s / 10k | CPU vs nginx | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    order = ["direct", "nginx", "hyper", "haproxy", "firegate"]
    for (config, mix) in sorted(rows, key=lambda k: (order.index(k[0]), k[1])):
        per = rows[(config, mix)].values()
        rps = median([v[0] for v in per])
        cpu = median([v[1] for v in per])
        rss = median([v[2] for v in per]) / 1024
        vs = "—" if config in ("direct", "nginx") or mix.startswith("cold") \
            else f"{ratio(config, mix, 1):.2f}×"
        cpu_s = "—" if config == "direct" else f"{cpu:.3f}"
        rss_s = "—" if config == "direct" else f"{rss:.1f}"
        print(f"| {config} | {mix} | {rps:,.0f} | {cpu_s} | {vs} | {rss_s} |")

    print("\nLatency of the cache-hit GET at a fixed rate (oha -q), ms:\n")
    print("| config | p50 | p99 | p99 added over direct |")
    print("|---|---:|---:|---:|")
    direct = lat.get("direct", {})
    for config in order:
        per = lat.get(config)
        if not per:
            continue
        p50 = median([v[0] for v in per.values()])
        p99 = median([v[1] for v in per.values()])
        added = median([per[r][1] - direct[r][1] for r in per if r in direct])
        print(f"| {config} | {p50:.3f} | {p99:.3f} | "
              f"{'—' if config == 'direct' else f'{added:+.3f}'} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
