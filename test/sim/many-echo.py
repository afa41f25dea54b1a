# A TCP echo server for many connections at once (not a test file: run inside a pod by the
# simulator tests): every byte a client sends comes back. One thread, epoll through
# selectors, so 10,000 idle connections cost a socket each and nothing more. Prints
# {"event": "listening"} once bound, then exits by itself after --seconds.
import json
import selectors
import socket
import sys
import time

port, seconds = int(sys.argv[1]), float(sys.argv[2])
sel = selectors.DefaultSelector()
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('0.0.0.0', port))
server.listen(4096)
server.setblocking(False)
sel.register(server, selectors.EVENT_READ, None)
print(json.dumps({'event': 'listening', 'port': port}), flush=True)

deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.5):
        if key.data is None:
            while True:
                try:
                    conn, _ = server.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, 'conn')
            continue
        conn = key.fileobj
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b''
        if not data:
            sel.unregister(conn)
            conn.close()
            continue
        try:
            conn.sendall(data)  # tiny pings: the send buffer never fills
        except OSError:
            sel.unregister(conn)
            conn.close()
