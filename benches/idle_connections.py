"""Open N keep-alive connections to a proxy, send one request on each, keep
them idle and print the proxy's RSS (benches/compare.sh rss).

TOKENS is a file of bearer tokens, one per line: connection i uses token
i (modulo their number), as N clients would — one token on all of them
would meet the per-principal bound on requests in flight (429)."""

import socket
import sys
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


def main(host, port, path, tokens_file, count, pid, upstream_port=None):
    tokens = [t.strip() for t in open(tokens_file) if t.strip()]
    before = rss_kib(pid)
    conns = []
    for i in range(count):
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                   f"Authorization: Bearer {tokens[i % len(tokens)]}\r\n\r\n").encode()
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(request)
        conns.append(s)
    answered = 0
    for s in conns:
        data = s.recv(65536)
        answered += data.startswith(b"HTTP/1.1 200")
    # Idle now; let the proxy settle (well inside header_read_timeout).
    time.sleep(2)
    after = rss_kib(pid)
    pooled = ""
    if upstream_port:
        pooled = f", {upstream_connections(upstream_port)} upstream connections pooled"
    print(f"{after / 1024:.1f} MiB ({(after - before) / 1024:+.1f} MiB for "
          f"{count} connections, {answered} answered 200{pooled})")
    for s in conns:
        s.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4],
         int(sys.argv[5]), int(sys.argv[6]),
         int(sys.argv[7]) if len(sys.argv) > 7 else None)
