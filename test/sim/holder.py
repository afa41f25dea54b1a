# A client that holds one TCP connection open and keeps using it: an HTTP/1.1 keep-alive
# request every 100 ms to the echo workload (not a test file: run inside a pod by the
# simulator tests). Prints JSON lines: {"event": "open"} after the first answer, {"event":
# "tick", "n": N} every 10 answers, and {"event": "closed", ...} when the connection ends
# (reset, end of stream, or a timeout), then exits. Stops by itself after --seconds.
import json
import socket
import sys
import time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 120.0


def say(**fields):
    print(json.dumps(fields), flush=True)


try:
    s = socket.create_connection((host, port), timeout=5)
except OSError as e:
    say(event='closed', n=0, error=type(e).__name__)
    sys.exit(0)
n = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        s.sendall(b'GET / HTTP/1.1\r\nHost: holder\r\n\r\n')
        data = s.recv(65536)
    except OSError as e:
        say(event='closed', n=n, error=type(e).__name__)
        sys.exit(0)
    if not data:
        say(event='closed', n=n, error='eof')
        sys.exit(0)
    # With L7 the source agent answers for a tunnel that is gone (503) instead of cutting the
    # client's connection: that ends this holder's use of the mesh path just the same.
    if not data.startswith(b'HTTP/1.1 200'):
        say(event='closed', n=n, error=data.split(b'\r\n', 1)[0].decode(errors='replace'))
        sys.exit(0)
    n += 1
    if n == 1:
        say(event='open', answer=data.decode(errors='replace').split('\r\n\r\n', 1)[-1].strip())
    elif n % 10 == 0:
        say(event='tick', n=n)
    time.sleep(0.1)
say(event='done', n=n)
