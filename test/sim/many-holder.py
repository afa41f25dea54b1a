# A client that holds COUNT TCP connections open to an echo server and keeps using all of
# them (not a test file: run inside a pod by the simulator tests). It opens them (at most 64
# connecting at once), checks one 8-byte round trip on each, prints {"event": "open", ...},
# then pings a rotating share of them every 50 ms, so every open connection sends and gets
# back 8 bytes once every CYCLE seconds. Once a second it prints a tick: how many are open,
# how many were closed (reset or end of stream) and when the first and last closed (wall
# clock, the same in every namespace), and the oldest last answer over the open ones, so a
# reader can tell every open connection has answered since a given moment. Stops by itself.
import errno
import json
import selectors
import socket
import sys
import time

host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
CYCLE = 2.0
PING = b'weftping'
sel = selectors.DefaultSelector()
deadline = time.monotonic() + seconds


def say(**fields):
    print(json.dumps(fields), flush=True)


class Conn:
    __slots__ = ('sock', 'due', 'last', 'sent_at')

    def __init__(self, sock):
        self.sock = sock
        self.due = 0  # bytes still to come back
        self.last = 0.0  # wall clock of the last complete answer
        self.sent_at = 0.0


conns = []
closed = {'n': 0, 'first': None, 'last': None, 'reasons': {}}


def close(c, reason):
    if c.sock is None:
        return
    try:
        sel.unregister(c.sock)
    except (KeyError, ValueError):
        pass
    c.sock.close()
    c.sock = None
    now = time.time()
    closed['n'] += 1
    closed['first'] = now if closed['first'] is None else closed['first']
    closed['last'] = now
    closed['reasons'][reason] = closed['reasons'].get(reason, 0) + 1


def ping(c):
    try:
        c.sock.send(PING)
        c.due += len(PING)
        c.sent_at = time.time()
    except OSError as e:
        close(c, errno.errorcode.get(e.errno, type(e).__name__))


def pump(timeout):
    for key, _ in sel.select(timeout=timeout):
        c = key.data
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as e:
            close(c, errno.errorcode.get(e.errno, type(e).__name__))
            continue
        if not data:
            close(c, 'eof')
            continue
        c.due -= len(data)
        if c.due <= 0:
            c.due = 0
            c.last = time.time()


# Open them all, a bounded number connecting at once.
failed_open = 0
pending = []
while len(conns) + failed_open < count or pending:
    while len(pending) < 64 and len(conns) + len(pending) + failed_open < count:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        pending.append((s, time.monotonic()))
    still = []
    w = selectors.DefaultSelector()
    for s, at in pending:
        w.register(s, selectors.EVENT_WRITE, at)
    ready = {k.fileobj for k, _ in w.select(timeout=0.2)}
    w.close()
    for s, at in pending:
        if s in ready:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                c = Conn(s)
                conns.append(c)
                sel.register(s, selectors.EVENT_READ, c)
                ping(c)
            else:
                s.close()
                failed_open += 1
        elif time.monotonic() - at > 10:
            s.close()
            failed_open += 1
        else:
            still.append((s, at))
    pending = still
    pump(0)
# Every one answers once before the holding starts.
until = time.monotonic() + 30
while time.monotonic() < until and any(c.sock is not None and c.due > 0 for c in conns):
    pump(0.1)
unanswered = sum(1 for c in conns if c.sock is not None and c.due > 0)
say(event='open', n=sum(1 for c in conns if c.sock is not None), failed=failed_open + unanswered, closed=closed['n'], reasons=closed['reasons'])

per_tick = max(1, int(len(conns) * 0.05 / CYCLE))
cursor = 0
next_tick = time.monotonic() + 1
while time.monotonic() < deadline:
    start = time.monotonic()
    for _ in range(per_tick):
        if not conns:
            break
        c = conns[cursor % len(conns)]
        cursor += 1
        if c.sock is not None and c.due == 0:
            ping(c)
    while time.monotonic() - start < 0.05:
        pump(0.05 - (time.monotonic() - start))
    if time.monotonic() >= next_tick:
        next_tick += 1
        live = [c for c in conns if c.sock is not None]
        say(event='tick', t=time.time(), open=len(live), closed=closed['n'], reasons=closed['reasons'],
            firstClose=closed['first'], lastClose=closed['last'],
            oldestAnswer=min((c.last for c in live), default=None),
            waiting=sum(1 for c in live if c.due > 0 and time.time() - c.sent_at > 3))
say(event='done')
