#!/usr/bin/env python3
"""A small meta-protocol client over a raw socket, exercising mcstore (or
memcached) with asserts: set/get/delete/arithmetic, quiet pipelines ending in
`mn`, opaque tokens, base64 keys and the stale/win flow.

Usage: meta_client_exercise.py <port> [--phase full|after-restart]

`full` runs every check and leaves `persist:stale` stale with its win token
handed out and `persist:counter` at 42; `after-restart` checks that both
survived a restart of the server (mcstore only).
"""

import base64
import socket
import sys


class MetaClient:
    """Speaks the meta protocol: sends raw lines, parses replies."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def reply(self):
        """One reply: (code, flags dict, value or None)."""
        tokens = self._line().split(b" ")
        code = tokens[0].decode()
        value = None
        if code == "VA":
            size = int(tokens[1])
            value = self._exact(size + 2)[:-2]
            tokens = tokens[1:]
        flags = {}
        for token in tokens[1:]:
            if token:
                flags[chr(token[0])] = token[1:].decode("latin1")
        return code, flags, value

    def raw_line(self):
        return self._line().decode("latin1")

    def command(self, line, data=None):
        payload = line.encode() + b"\r\n"
        if data is not None:
            payload += data + b"\r\n"
        self.send(payload)
        return self.reply()


def set_get_delete(c):
    code, flags, _ = c.command("ms mc:a 5 T0 F7 c k", b"hello")
    assert code == "HD" and flags["k"] == "mc:a" and int(flags["c"]) > 0, (code, flags)
    cas = int(flags["c"])
    code, flags, value = c.command("mg mc:a v f c s t k")
    assert (code, value) == ("VA", b"hello"), (code, value)
    assert flags == {"f": "7", "c": str(cas), "s": "5", "t": "-1", "k": "mc:a"}, flags
    assert c.command("mg mc:a")[0] == "HD"
    assert c.command("mg mc:missing v")[0] == "EN"
    assert c.command("ms mc:a 1 ME", b"x")[0] == "NS"
    assert c.command("ms mc:a 1 MA", b"!")[0] == "HD"
    assert c.command("ms mc:a 1 MP", b"<")[0] == "HD"
    assert c.command("mg mc:a v")[2] == b"<hello!"
    assert c.command("ms mc:a 1 C%d" % cas, b"y")[0] == "EX"
    cas = int(c.command("mg mc:a c")[1]["c"])
    assert c.command("ms mc:a 3 C%d" % cas, b"new")[0] == "HD"
    assert c.command("md mc:a C1")[0] == "EX"
    assert c.command("md mc:a")[0] == "HD"
    assert c.command("md mc:a")[0] == "NF"
    assert c.command("mg mc:a v")[0] == "EN"


def arithmetic(c):
    assert c.command("ma mc:n")[0] == "NF"
    code, _, value = c.command("ma mc:n N0 J10 v")
    assert (code, value) == ("VA", b"10"), (code, value)
    assert c.command("ma mc:n v D5")[2] == b"15"
    assert c.command("ma mc:n v MD D20")[2] == b"0"
    assert c.command("ma mc:n v M+ D18446744073709551615")[2] == b"18446744073709551615"
    assert c.command("ma mc:n v")[2] == b"0"
    code, flags, _ = c.command("ma mc:n T100 t c")
    assert code == "HD" and 99 <= int(flags["t"]) <= 100 and int(flags["c"]) > 0, flags
    c.command("ms mc:text 3", b"abc")
    c.send(b"ma mc:text\r\n")
    line = c.raw_line()
    assert line == "CLIENT_ERROR cannot increment or decrement non-numeric value", line


def quiet_pipeline(c):
    batch = b"".join([
        b"ms mc:q1 1 q\r\n1\r\n",
        b"ms mc:q2 1 q\r\n2\r\n",
        b"mg mc:q1 v q Oa1\r\n",
        b"mg mc:qmissing v q Oa2\r\n",
        b"md mc:q2 q Oa3\r\n",
        b"md mc:q2 q Oa4\r\n",
        b"ma mc:q1 q Oa5\r\n",
        b"mn\r\n",
    ])
    c.send(batch)
    replies = []
    while True:
        reply = c.reply()
        replies.append(reply)
        if reply[0] == "MN":
            break
    assert replies == [
        ("VA", {"O": "a1"}, b"1"),
        ("NF", {"O": "a4"}, None),
        ("MN", {}, None),
    ], replies
    assert c.command("mg mc:q1 v")[2] == b"2"


def opaque_tokens(c):
    opaque = "z" * 31
    assert c.command("mg mc:none O%s k" % opaque) == ("EN", {"O": opaque, "k": "mc:none"}, None)
    c.send(b"mg mc:none O%s\r\n" % (opaque + "z").encode())
    assert c.raw_line() == "CLIENT_ERROR opaque token too long"
    c.send(b"mg mc:o1 Ofirst q\r\nmg mc:o2 Osecond k\r\nmn\r\n")
    assert c.reply() == ("EN", {"O": "second", "k": "mc:o2"}, None)
    assert c.reply()[0] == "MN"


def base64_keys(c):
    key = b"bin\x00key\xff"
    encoded = base64.b64encode(key).decode()
    code, flags, _ = c.command("ms %s 3 b k" % encoded, b"bin")
    assert code == "HD" and flags["k"] == encoded and "b" in flags, flags
    code, flags, value = c.command("mg %s b v k" % encoded)
    assert (code, value, flags["k"]) == ("VA", b"bin", encoded), (code, flags)
    c.send(b"me %s b\r\n" % encoded.encode())
    line = c.raw_line()
    assert line.startswith("ME %s exp=-1 " % encoded), line
    assert c.command("md %s b" % encoded)[0] == "HD"
    assert c.command("mg %s b" % encoded)[0] == "EN"


def stale_win_flow(c, key):
    assert c.command("ms %s 3 T0" % key, b"old")[0] == "HD"
    assert c.command("md %s I T30" % key)[0] == "HD"
    code, flags, value = c.command("mg %s v c t" % key)
    assert code == "VA" and value == b"old" and "W" in flags and "X" in flags, flags
    assert "Z" not in flags and 29 <= int(flags["t"]) <= 30, flags
    stale_cas = int(flags["c"])
    code, flags, _ = c.command("mg %s" % key)
    assert "Z" in flags and "X" in flags and "W" not in flags, flags
    # The winner recaches with the stale cas: stored, still stale.
    assert c.command("ms %s 3 C%d I" % (key, stale_cas - 1), b"new")[0] == "HD"
    code, flags, value = c.command("mg %s v" % key)
    assert value == b"new" and "X" in flags and "Z" in flags, flags
    return stale_cas


def full(c):
    set_get_delete(c)
    arithmetic(c)
    quiet_pipeline(c)
    opaque_tokens(c)
    base64_keys(c)
    stale_win_flow(c, "mc:stale")
    # Recache with a matching cas clears the stale state.
    cas = int(c.command("mg mc:stale c")[1]["c"])
    assert c.command("ms mc:stale 5 C%d" % cas, b"fresh")[0] == "HD"
    code, flags, _ = c.command("mg mc:stale v")
    assert "X" not in flags and "Z" not in flags and "W" not in flags, flags
    # Vivify: the first client wins, the next sees the token sent.
    code, flags, value = c.command("mg mc:viv N30 v")
    assert (code, value) == ("VA", b"") and "W" in flags, (code, flags)
    assert "Z" in c.command("mg mc:viv v")[1]
    # Left behind for the after-restart phase.
    stale_win_flow(c, "persist:stale")
    c.command("ms persist:counter 2", b"41")
    assert c.command("ma persist:counter v")[2] == b"42"


def after_restart(c):
    code, flags, value = c.command("mg persist:stale v")
    assert code == "VA" and value == b"new", (code, value)
    assert "X" in flags and "Z" in flags and "W" not in flags, flags
    assert c.command("ma persist:counter v")[2] == b"43"


def main():
    port = int(sys.argv[1])
    phase = "full"
    if "--phase" in sys.argv:
        phase = sys.argv[sys.argv.index("--phase") + 1]
    client = MetaClient(port)
    if phase == "full":
        full(client)
    elif phase == "after-restart":
        after_restart(client)
    else:
        raise SystemExit("unknown phase %r" % phase)
    assert client.command("mn")[0] == "MN"
    print("meta client exercise (%s): all checks passed" % phase)


if __name__ == "__main__":
    main()
