#!/usr/bin/env python3
"""Tables from the accuracy bench's per-second CSVs (benches/accuracy.sh).

Usage: analyze.py RESULTS_DIR [--steady-after S] [--threshold-ms 1]

Reads every RESULTS_DIR/<scenario>-seed<N>/errors.csv (written by
sample.py) and its meta.txt (scenario, seed, expected bias, the relay's
summary), and prints markdown:

- per scenario and client, over the seeds: RMS, p95 and max |error - bias|
  over t >= STEADY_AFTER, the mean error, time to the first
  |error - bias| < 1 ms and the time after which it stays under 1 ms;
- per scenario and seed, the four clients side by side with sundial's
  ratio to the best peer (chronyd, ntpd-rs) on each figure.

`bias` is the error a client must show on the scenario's path: half the
difference of the one-way delays ((out - in) / 2: +1 ms on 6/4 ms), since
NTP cannot see asymmetry. It is 0 on a symmetric path. Times count from
the start of the clients; a client has no error before it calls itself
synchronized (see sample.py), so "first < 1 ms" is never before that.

Python 3 standard library only.
"""

import argparse
import csv
import math
import os
import sys

CLIENTS = ["sundial-nts", "sundial-ntp", "chronyd", "ntpd-rs"]
PEERS = ["chronyd", "ntpd-rs"]


def read_meta(path):
    meta = {}
    try:
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    meta[k.strip()] = v.strip()
    except OSError:
        pass
    return meta


def read_series(path):
    """client -> list of (t, error or None, valid)."""
    series = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                t = float(row["t"])
            except (KeyError, ValueError):
                continue
            err = row.get("error") or ""
            try:
                e = float(err) if err else None
            except ValueError:
                e = None
            valid = row.get("valid") == "1"
            series.setdefault(row.get("client", "?"), []).append((t, e, valid))
    return series


def percentile(sorted_values, q):
    """Nearest rank."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def stats(samples, bias, steady_after, threshold):
    """Figures for one client in one run; None where undefined."""
    first_valid = next((t for t, e, v in samples if v and e is not None), None)
    out = {
        "synced_at": first_valid,
        "n": 0,
        "missing": 0,
        "rms": None,
        "p95": None,
        "max": None,
        "mean": None,
        "first_under": None,
        "stays_under": None,
    }
    if first_valid is None:
        return out
    after = [(t, e) for t, e, _ in samples if t >= first_valid]
    steady = [e - bias for t, e in after if t >= steady_after and e is not None]
    out["missing"] = sum(1 for t, e in after if t >= steady_after and e is None)
    if steady:
        out["n"] = len(steady)
        dev = sorted(abs(d) for d in steady)
        out["rms"] = math.sqrt(sum(d * d for d in steady) / len(steady))
        out["p95"] = percentile(dev, 0.95)
        out["max"] = dev[-1]
        out["mean"] = sum(steady) / len(steady) + bias
    known = [(t, abs(e - bias)) for t, e in after if e is not None]
    out["first_under"] = next((t for t, d in known if d < threshold), None)
    last_over = None
    for i, (t, d) in enumerate(known):
        if d >= threshold:
            last_over = i
    if last_over is None:
        out["stays_under"] = known[0][0] if known else None
    elif last_over + 1 < len(known):
        out["stays_under"] = known[last_over + 1][0]
    return out


def ms(v, digits=3):
    return "-" if v is None else "%.*f" % (digits, v * 1e3)


def secs(v):
    return "never" if v is None else "%.0f" % v


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return "%.2f" % (a / b)


def mean_of(values):
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("--steady-after", type=float, default=120.0)
    p.add_argument("--threshold-ms", type=float, default=1.0)
    a = p.parse_args()
    threshold = a.threshold_ms / 1e3

    runs = []  # (scenario, seed, meta, {client: stats})
    for name in sorted(os.listdir(a.results)):
        run_dir = os.path.join(a.results, name)
        csv_path = os.path.join(run_dir, "errors.csv")
        if not os.path.isfile(csv_path):
            continue
        meta = read_meta(os.path.join(run_dir, "meta.txt"))
        scenario = meta.get("scenario", name)
        seed = meta.get("seed", "?")
        bias = float(meta.get("bias_seconds", "0") or 0)
        series = read_series(csv_path)
        figures = {c: stats(series.get(c, []), bias, a.steady_after, threshold) for c in CLIENTS}
        runs.append((scenario, seed, meta, figures))
    if not runs:
        print("analyze.py: no */errors.csv under %s" % a.results, file=sys.stderr)
        return 1

    order = []
    for scenario, _, _, _ in runs:
        if scenario not in order:
            order.append(scenario)

    print("# Accuracy bench: %s\n" % a.results)
    print(
        "Errors are |client clock - true time - bias| over t >= %.0f s, in ms; "
        "bias = (out - in) / 2 of the path's mean delays. Times are seconds from "
        "the clients' start: the first sample under %.1f ms, and the time after "
        "which every sample stays under it. 'ratio' is sundial over the better "
        "of chronyd and ntpd-rs (below 1: sundial is closer).\n" % (a.steady_after, a.threshold_ms)
    )
    for scenario in order:
        these = [r for r in runs if r[0] == scenario]
        meta = these[0][2]
        print("## %s\n" % scenario)
        if meta.get("description"):
            print("%s (bias %s ms). Seeds: %s.\n" % (
                meta["description"], ms(float(meta.get("bias_seconds", "0") or 0), 1),
                ", ".join(r[1] for r in these)))
        print("| client | RMS ms | p95 ms | max ms | mean error ms | first < 1 ms, s | stays < 1 ms, s | samples | missing |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for client in CLIENTS:
            fs = [r[3][client] for r in these]
            # Over seeds: the RMS of the pooled samples, the mean of p95s,
            # the largest max; convergence times listed per seed.
            n = sum(f["n"] for f in fs)
            pooled = (
                math.sqrt(sum(f["rms"] ** 2 * f["n"] for f in fs if f["rms"] is not None) / n)
                if n
                else None
            )
            maxes = [f["max"] for f in fs if f["max"] is not None]
            print("| %s | %s | %s | %s | %s | %s | %s | %d | %d |" % (
                client,
                ms(pooled),
                ms(mean_of([f["p95"] for f in fs])),
                ms(max(maxes) if maxes else None),
                ms(mean_of([f["mean"] for f in fs])),
                " / ".join(secs(f["first_under"]) for f in fs),
                " / ".join(secs(f["stays_under"]) for f in fs),
                n,
                sum(f["missing"] for f in fs),
            ))
        print()
        print("| seed | figure | sundial-nts | sundial-ntp | chronyd | ntpd-rs | ratio nts | ratio ntp |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for _, seed, _, figures in these:
            for key, label in (("rms", "RMS ms"), ("p95", "p95 ms"), ("max", "max ms")):
                peers = [figures[c][key] for c in PEERS if figures[c][key] is not None]
                best = min(peers) if peers else None
                print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    seed, label,
                    *(ms(figures[c][key]) for c in CLIENTS),
                    ratio(figures["sundial-nts"][key], best),
                    ratio(figures["sundial-ntp"][key], best),
                ))
        print()
        for _, seed, meta, _ in these:
            if meta.get("relay"):
                print("- seed %s relay: `%s`" % (seed, meta["relay"]))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
