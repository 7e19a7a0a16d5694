#!/usr/bin/env python3
"""One-link fault proxy for scripts/fault-campaign.sh (stdlib only).

    fault-proxy.py LISTEN_PORT TARGET_PORT MODE K [--plaintext]
    fault-proxy.py freeports N

Forwards every connection to 127.0.0.1:TARGET_PORT. On the dialler-to-listener direction of
the first connection it counts mpc-pipe wire frames after the handshake (hello 64 + tag 32 +
verdict 1 bytes; then a 16-byte header whose first 4 bytes are the payload length, the
payload, and a 16-byte tag unless --plaintext) and at frame K applies MODE:
  pass     forward everything (prints the frame count at the end: the baseline)
  drop     leave frame K out
  dup      send frame K twice
  corrupt  flip one random bit of frame K
  cut      close both sides of the link instead of sending frame K
"""
import random
import socket
import sys
import threading
import time

HANDSHAKE_STEPS = (64, 32, 1)
HEADER = 16
TAG = 16


def pump(src, dst):
    try:
        while True:
            b = src.recv(1 << 16)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    for s in (dst, src):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def read_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            return None
        buf += b
    return bytes(buf)


def framed(src, dst, mode, k, tag, state):
    try:
        # The handshake's steps one by one: each side waits for the other's before its next.
        for step in HANDSHAKE_STEPS:
            hs = read_exact(src, step)
            if hs is None:
                return
            dst.sendall(hs)
        i = 0
        while True:
            hdr = read_exact(src, HEADER)
            if hdr is None:
                break
            n = int.from_bytes(hdr[:4], "little")
            body = read_exact(src, n + tag)
            if body is None:
                break
            frame = hdr + body
            if i == k and mode != "pass":
                state["applied"] = True
                if mode == "drop":
                    frame = b""
                elif mode == "dup":
                    frame = frame + frame
                elif mode == "corrupt":
                    bit = random.randrange(8 * len(frame))
                    f = bytearray(frame)
                    f[bit // 8] ^= 1 << (bit % 8)
                    frame = bytes(f)
                elif mode == "cut":
                    break
            dst.sendall(frame)
            i += 1
            # Counted as they go: the link may end in an error (when the listener's side
            # half-closes first, `pump` shuts the whole link), and the baseline still needs
            # the count of the frames that passed.
            state["frames"] = i
    except OSError:
        pass
    for s in (dst, src):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def connect_upstream(port):
    # The listener may not be up yet (the parties start together): retry for 20 s.
    for _ in range(200):
        try:
            return socket.create_connection(("127.0.0.1", port))
        except ConnectionRefusedError:
            time.sleep(0.1)
    return None


def main():
    if sys.argv[1] == "freeports":
        socks = [socket.socket() for _ in range(int(sys.argv[2]))]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        print(" ".join(str(s.getsockname()[1]) for s in socks))
        return
    listen, target, mode, k = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    tag = 0 if "--plaintext" in sys.argv else TAG
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen))
    ls.listen(16)
    state = {"frames": 0, "applied": False}
    first = True
    threads = []
    ls.settimeout(60)
    try:
        while True:
            c, _ = ls.accept()
            u = connect_upstream(target)
            if u is None:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if first:
                a = threading.Thread(target=framed, args=(c, u, mode, k, tag, state))
                first = False
            else:
                a = threading.Thread(target=pump, args=(c, u))
            b = threading.Thread(target=pump, args=(u, c))
            for t in (a, b):
                t.daemon = True
                t.start()
            threads.append(a)
            # One session: after the first link ends, stop accepting.
            if len(threads) == 1:
                a.join()
                break
    except (socket.timeout, OSError):
        pass
    print(f"frames {state['frames']} applied {state['applied']}", file=sys.stderr)


if __name__ == "__main__":
    main()
