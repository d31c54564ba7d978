#!/usr/bin/env python3
"""Memory of `serve` under the issue-12 attacks, by RSS sampling (/proc/PID/status VmRSS/VmHWM).

Starts the release binary with the shipped defaults, runs each attack against it from this
process (loopback only, bounded in count and time), and prints the peak RSS during each and
whether a legitimate review was still answered while it ran (and how fast).
Usage: bench/attacks.py target/release/kafka-listener-injector DIR_WITH_CERTS
"""
import json, os, socket, ssl, subprocess, sys, threading, time

binary, certs = sys.argv[1], sys.argv[2]
fixture = open(os.path.join(os.path.dirname(__file__), "..", "tests/fixtures/review-1.37-statefulset-pod.json"), "rb").read()
proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:28643", "--admin-listen", "127.0.0.1:28690",
                         "--tls-cert", f"{certs}/tls.crt", "--tls-key", f"{certs}/tls.key", "--domain", "kafka.example.com"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ctx = ssl.create_default_context(cafile=f"{certs}/ca.crt")
ctx.set_alpn_protocols(["http/1.1"])

def rss():
    fields = dict(l.split(":", 1) for l in open(f"/proc/{proc.pid}/status"))
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024

def connect():
    s = socket.create_connection(("127.0.0.1", 28643))
    return ctx.wrap_socket(s, server_hostname="localhost")

def review():
    started = time.monotonic()
    s = connect()
    s.sendall(b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(fixture) + fixture)
    data = s.recv(65536)
    s.close()
    return data.split(b" ")[1].decode(), (time.monotonic() - started) * 1000

time.sleep(1)
print(f"idle: RSS {rss()[0]} MiB")

def attack(name, opener, count, hold=3.0):
    peak = [0]
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss()[0]); time.sleep(0.05)
    sampler = threading.Thread(target=sample); sampler.start()
    socks = []
    threads = [threading.Thread(target=lambda: socks.append(opener())) for _ in range(count)]
    for t in threads: t.start()
    for t in threads: t.join()
    time.sleep(0.5)
    status, ms = review()
    time.sleep(hold)
    stop.set(); sampler.join()
    for s in socks:
        try: s.close()
        except Exception: pass
    print(f"{name}: peak RSS {peak[0]} MiB; a legitimate review meanwhile: {status} in {ms:.1f} ms")
    time.sleep(1)

def big_body():
    try:
        s = connect()
        body = b" " * (7 * 1024 * 1024 - 10)
        s.sendall(b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body))
        s.sendall(body[: len(body) - 100])  # all but the end: the server holds what it read
        return s
    except Exception as e:
        return socket.socket()

def huge_headers():
    try:
        s = connect()
        s.sendall(b"POST /mutate HTTP/1.1\r\nhost: x\r\n" + b"x-pad: " + b"a" * (385 * 1024))
        return s
    except Exception:
        return socket.socket()

def amplifying():
    r = json.loads(fixture)
    name = "b" * 240 + "-0"
    r["request"]["object"]["metadata"]["name"] = name
    r["request"]["object"]["metadata"]["annotations"]["kafka-listener-injector.io/listeners"] = "{pod}" * 800
    body = json.dumps(r).encode()
    s = connect()
    s.sendall(b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    s.recv(65536)
    return s

attack("30 concurrent 7 MiB bodies", big_body, 30)
attack("317 connections with 385 KB of unfinished headers", huge_headers, 317)
attack("50 amplifying listeners annotations", amplifying, 50)
print(f"overall peak (VmHWM): {rss()[1]} MiB")
proc.terminate(); proc.wait()
