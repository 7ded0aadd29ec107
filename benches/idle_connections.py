"""Open N keep-alive connections to a proxy, send one request on each, keep
them idle and print the proxy's RSS (benches/compare.sh rss).

With ONE_AT_A_TIME=1 each request is answered before the next connection
opens: what the idle connections cost. Without, all N requests are sent
first and then read: a burst of N requests in flight at once, each of
which the proxy forwards, so that its peak of upstream connections (also
printed) and what the allocator keeps of them count too.

TOKENS is a file of bearer tokens, one per line: connection i uses token
i (modulo their number), as N clients would — one token on all of them
would meet the per-principal bound on requests in flight (429)."""

import os
import socket
import sys
import threading
import time


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def upstream_connections(port):
    """Established TCP connections to `port` (the proxy's to its upstream)."""
    n = 0
    for line in open("/proc/net/tcp").readlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[2].split(":")[1], 16) == port:
            n += 1
    return n


class PeakUpstream(threading.Thread):
    """The most connections to the upstream seen open, sampled every 5 ms."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.peak, self.done = port, 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, upstream_connections(self.port))
            time.sleep(0.005)


def main(host, port, path, tokens_file, count, pid, upstream_port=None):
    one_at_a_time = os.environ.get("ONE_AT_A_TIME") == "1"
    tokens = [t.strip() for t in open(tokens_file) if t.strip()]
    before = rss_kib(pid)
    peak = PeakUpstream(upstream_port) if upstream_port else None
    if peak:
        peak.start()
    conns, answered = [], 0
    for i in range(count):
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                   f"Authorization: Bearer {tokens[i % len(tokens)]}\r\n\r\n").encode()
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(request)
        conns.append(s)
        if one_at_a_time:
            answered += s.recv(65536).startswith(b"HTTP/1.1 200")
    for s in [] if one_at_a_time else conns:
        data = s.recv(65536)
        answered += data.startswith(b"HTTP/1.1 200")
    # Idle now; let the proxy settle (well inside header_read_timeout).
    time.sleep(2)
    after = rss_kib(pid)
    pooled = ""
    if peak:
        peak.done.set()
        peak.join()
        pooled = (f", {upstream_connections(upstream_port)} upstream connections pooled,"
                  f" {peak.peak} at the peak")
    print(f"{after / 1024:.1f} MiB ({(after - before) / 1024:+.1f} MiB for "
          f"{count} connections, {answered} answered 200{pooled})")
    for s in conns:
        s.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4],
         int(sys.argv[5]), int(sys.argv[6]),
         int(sys.argv[7]) if len(sys.argv) > 7 else None)
