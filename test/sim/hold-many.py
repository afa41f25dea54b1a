# Opens N TCP connections to HOST:PORT one after another and holds them (not a test file: run
# inside a pod by the simulator tests). After --settle seconds it looks at each without
# blocking: still open (nothing to read), reset by the other end, or ended with a FIN.
# Prints one JSON line {"opened", "held", "reset", "fin", "failed"} and exits (all closed).
import json
import socket
import sys
import time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
settle = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
socks, failed = [], 0
for _ in range(n):
    try:
        socks.append(socket.create_connection((host, port), timeout=5))
    except OSError:
        failed += 1
time.sleep(settle)
held = reset = fin = 0
for s in socks:
    s.setblocking(False)
    try:
        if s.recv(1) == b'':
            fin += 1
        else:
            held += 1
    except BlockingIOError:
        held += 1
    except OSError:
        reset += 1
    s.close()
print(json.dumps({'opened': len(socks), 'held': held, 'reset': reset, 'fin': fin, 'failed': failed}), flush=True)
