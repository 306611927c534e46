#!/usr/bin/env python3
"""Once a second, read each client's clock error and append it to a CSV.

Runs inside one scenario's client namespace (benches/accuracy.sh starts it
with `ip netns exec`). Server and clients share one real clock, which is
the truth, so every number below is an error in seconds, positive when
the client's clock (real or virtual) is fast:

- sundial (`run --observe`): `virtual_correction_seconds` from its
  observation socket (what `sundial status --json` prints): the virtual
  clock the discipline steers minus the real clock.
- chronyd -x: the time it serves. With -x chrony never touches the clock
  but keeps a virtual ("cooked") one; we ask it over loopback with plain
  NTP (QUERIES requests, the one with the lowest round trip kept) and
  take its offset from our clock.
- ntpd-rs: it is configured never to steer, so its own estimate of the
  source's offset (server minus us, from its observation socket: what
  `ntp-ctl status` prints) is the error of the clock it would have made.

Output rows: t,client,error,valid,estimate,uncertainty,detail
  t        seconds since the sampler started
  error    as above; empty when the client has none
  valid    1 once the client calls itself synchronized (sundial), answers
           with a leap indicator other than "unsynchronized" (chronyd),
           or has a measurement (ntpd-rs)
  estimate / uncertainty
           the client's own view of its error, where it gives one
           (sundial: clock_error_seconds / clock_uncertainty_seconds;
           ntpd-rs: the source's offset uncertainty)
  detail   chronyd: the loopback round trip of the query kept, seconds

Python 3 standard library only. Every loop is bounded by --duration.
"""

import argparse
import json
import math
import socket
import struct
import sys
import time

NTP_EPOCH_OFFSET = 2_208_988_800  # 1900-01-01 to 1970-01-01, seconds
MAX_SNAPSHOT = 16 * 1024 * 1024


def read_observation(path, timeout=2.0):
    """The JSON a daemon writes on its observation socket. ntpd-rs puts an
    8-byte length in front; sundial writes the JSON alone."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        chunks, size = [], 0
        while size < MAX_SNAPSHOT:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
            size += len(c)
    finally:
        s.close()
    data = b"".join(chunks)
    start = data.find(b"{")
    if start < 0:
        raise ValueError("no JSON on %s" % path)
    return json.loads(data[start:])


def sundial_row(path):
    st = read_observation(path)
    err = st.get("virtual_correction_seconds")
    valid = 1 if st.get("system", {}).get("synchronized") else 0
    return err, valid, st.get("clock_error_seconds"), st.get("clock_uncertainty_seconds"), ""


def ntpd_rs_row(path):
    st = read_observation(path)
    sources = st.get("sources") or []
    for src in sources:
        # ntpd-rs 1.9 flattens the source's time data into the source:
        # {"offset": .., "uncertainty": .., "delay": .., "name": .., ...}
        # (seconds, remote minus local). Older layouts nest it in
        # "timedata".
        td = src if isinstance(src, dict) and "offset" in src else find_key(src, "timedata")
        if isinstance(td, dict) and td.get("offset") is not None:
            off = seconds(td.get("offset"))
            unc = seconds(td.get("uncertainty"))
            return off, 1, off, unc, ""
    return None, 0, None, None, ""


def seconds(value):
    """ntpd-rs writes durations as plain floats (seconds) in 1.x; accept a
    {"secs":..,"nanos":..} or [secs, nanos] form too."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict) and "secs" in value:
        return value["secs"] + value.get("nanos", 0) / 1e9
    if isinstance(value, list) and len(value) == 2:
        return value[0] + value[1] / 1e9
    return None


def find_key(obj, key, depth=0):
    if depth > 6:
        return None
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find_key(v, key, depth + 1)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_key(v, key, depth + 1)
            if r is not None:
                return r
    return None


def ntp_ts(ns):
    """Unix nanoseconds -> 64-bit NTP timestamp."""
    secs, frac_ns = divmod(ns, 1_000_000_000)
    return ((secs + NTP_EPOCH_OFFSET) << 32) | ((frac_ns << 32) // 1_000_000_000)


def from_ntp(ts):
    """64-bit NTP timestamp -> Unix nanoseconds."""
    secs, frac = ts >> 32, ts & 0xFFFFFFFF
    return (secs - NTP_EPOCH_OFFSET) * 1_000_000_000 + (frac * 1_000_000_000 >> 32)


def chrony_row(sock, addr, queries):
    """Plain NTP queries to chronyd's served clock; the lowest round trip
    wins. Returns (offset, valid, None, None, rtt)."""
    best = None
    for _ in range(queries):
        t1 = time.time_ns()
        tx = ntp_ts(t1)
        req = struct.pack("!B47x", 0x23)[:40] + struct.pack("!Q", tx)
        try:
            sock.sendto(req, addr)
            deadline = time.monotonic() + 0.2
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                data, _ = sock.recvfrom(512)
                t4 = time.time_ns()
                if len(data) >= 48 and struct.unpack("!Q", data[24:32])[0] == tx:
                    break
        except (socket.timeout, OSError):
            continue
        li = data[0] >> 6
        t2 = from_ntp(struct.unpack("!Q", data[32:40])[0])
        t3 = from_ntp(struct.unpack("!Q", data[40:48])[0])
        rtt = (t4 - t1) - (t3 - t2)
        offset = ((t2 - t1) + (t3 - t4)) / 2
        if best is None or rtt < best[0]:
            best = (rtt, offset, li)
    if best is None:
        return None, 0, None, None, ""
    rtt, offset, li = best
    return offset / 1e9, 0 if li == 3 else 1, None, None, "%.9f" % (rtt / 1e9)


def fmt(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return "%.9f" % v
    return str(v)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--sundial", action="append", default=[], metavar="NAME=SOCKET")
    p.add_argument("--chrony", action="append", default=[], metavar="NAME=HOST:PORT")
    p.add_argument("--ntpd-rs", action="append", default=[], metavar="NAME=SOCKET")
    p.add_argument("--queries", type=int, default=4)
    a = p.parse_args()

    readers = []
    for spec in a.sundial:
        name, path = spec.split("=", 1)
        readers.append((name, lambda path=path: sundial_row(path)))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    for spec in a.chrony:
        name, hp = spec.split("=", 1)
        host, port = hp.rsplit(":", 1)
        addr = (host, int(port))
        readers.append((name, lambda addr=addr: chrony_row(udp, addr, a.queries)))
    for spec in a.ntpd_rs:
        name, path = spec.split("=", 1)
        readers.append((name, lambda path=path: ntpd_rs_row(path)))

    start = time.monotonic()
    steps = int(a.duration / a.interval) + 1
    errors = {}
    with open(a.out, "w", buffering=1) as out:
        out.write("t,client,error,valid,estimate,uncertainty,detail\n")
        for k in range(steps):
            wake = start + k * a.interval
            delay = wake - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = time.monotonic() - start
            for name, read in readers:
                try:
                    err, valid, est, unc, detail = read()
                except (OSError, ValueError, KeyError, TypeError) as e:
                    if name not in errors:
                        print("sample.py: %s: %s" % (name, e), file=sys.stderr)
                    errors[name] = str(e)
                    err, valid, est, unc, detail = None, 0, None, None, ""
                out.write("%.3f,%s,%s,%d,%s,%s,%s\n" % (t, name, fmt(err), valid, fmt(est), fmt(unc), detail))
    udp.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
