"""Exercise every memcache text operation through pymemcache against a server.

Usage: python3 pymemcache_exercise.py PORT [--mcstore]

Connects to 127.0.0.1:PORT and asserts the results of set/get/get_many/gets/
cas/add/replace/append/prepend/delete/incr/decr/touch/flush_all/stats/version,
their noreply variants, and binary values. With --mcstore the version string
must carry the `-mcstore-` suffix. Exits non-zero on the first failed check.
"""

import sys
import time

from pymemcache.client.base import Client

PORT = int(sys.argv[1])
EXPECT_MCSTORE = "--mcstore" in sys.argv[2:]
PREFIX = "py%d_" % int(time.time() * 1000)


def key(name):
    return PREFIX + name


def check(label, actual, expected):
    if actual != expected:
        raise AssertionError("%s: expected %r, got %r" % (label, expected, actual))
    print("ok   %s" % label)


def main():
    client = Client(("127.0.0.1", PORT), connect_timeout=5, timeout=5, default_noreply=False)

    # set / get
    check("set", client.set(key("a"), b"hello"), True)
    check("get hit", client.get(key("a")), b"hello")
    check("get miss", client.get(key("missing")), None)
    check("set with flags keeps value", client.set(key("f"), b"flagged", flags=4294967295), True)
    raw = client.raw_command(b"get " + key("f").encode(), b"END")
    check("raw get shows flags", raw.split(b"\r\n")[0], b"VALUE " + key("f").encode() + b" 4294967295 7")

    # binary-ish values
    binary = bytes(range(256)) + b"\r\nEND\r\n\x00\r\n"
    check("set binary", client.set(key("bin"), binary), True)
    check("get binary", client.get(key("bin")), binary)
    check("set empty", client.set(key("empty"), b""), True)
    check("get empty", client.get(key("empty")), b"")
    big = bytes((i * 7) % 256 for i in range(500_000))
    check("set 500 KB", client.set(key("big"), big), True)
    check("get 500 KB", client.get(key("big")), big)

    # get_many
    client.set(key("m1"), b"one")
    client.set(key("m2"), b"two")
    many = client.get_many([key("m1"), key("m2"), key("m3")])
    check("get_many", many, {key("m1"): b"one", key("m2"): b"two"})
    keys = [key("k%d" % i) for i in range(150)]
    for k in keys[::3]:
        client.set(k, k.encode())
    check("get_many 150 keys", client.get_many(keys), {k: k.encode() for k in keys[::3]})

    # gets / cas
    check("gets miss", client.gets(key("nocas")), (None, None))
    value, cas = client.gets(key("a"))
    check("gets value", value, b"hello")
    check("cas matching", client.cas(key("a"), b"world", cas), True)
    check("cas stale", client.cas(key("a"), b"again", cas), False)
    check("cas missing key", client.cas(key("nocas"), b"x", b"1"), None)
    value2, cas2 = client.gets(key("a"))
    check("value after cas", value2, b"world")
    check("cas unique changed", cas2 != cas, True)
    multi = client.gets_many([key("a"), key("m1")])
    check("gets_many keys", sorted(multi), sorted([key("a"), key("m1")]))

    # add / replace / append / prepend
    check("add new", client.add(key("add"), b"first"), True)
    check("add existing", client.add(key("add"), b"second"), False)
    check("value after add", client.get(key("add")), b"first")
    check("replace existing", client.replace(key("add"), b"third"), True)
    check("replace missing", client.replace(key("norep"), b"x"), False)
    check("append", client.append(key("add"), b"-tail"), True)
    check("prepend", client.prepend(key("add"), b"head-"), True)
    check("value after append/prepend", client.get(key("add")), b"head-third-tail")
    check("append missing", client.append(key("noapp"), b"x"), False)
    check("prepend missing", client.prepend(key("noapp"), b"x"), False)

    # delete
    check("delete hit", client.delete(key("add")), True)
    check("delete miss", client.delete(key("add")), False)
    check("get after delete", client.get(key("add")), None)

    # incr / decr
    client.set(key("n"), b"10")
    check("incr", client.incr(key("n"), 5), 15)
    check("decr", client.decr(key("n"), 20), 0)
    check("incr missing", client.incr(key("nonum"), 1), None)
    check("decr missing", client.decr(key("nonum"), 1), None)
    client.set(key("wrap"), b"18446744073709551615")
    check("incr wraps", client.incr(key("wrap"), 1), 0)
    client.set(key("shrink"), b"100")
    check("decr shrink", client.decr(key("shrink"), 95), 5)
    check("get after shrink", client.get(key("shrink")).rstrip(b" "), b"5")
    client.set(key("text"), b"abc")
    try:
        client.incr(key("text"), 1)
        raise AssertionError("incr on non-numeric value did not fail")
    except AssertionError:
        raise
    except Exception as error:  # pymemcache raises MemcacheClientError
        check("incr non-numeric fails", "non-numeric" in str(error), True)

    # touch
    client.set(key("t"), b"touch me")
    check("touch hit", client.touch(key("t"), 100), True)
    check("touch miss", client.touch(key("nothere"), 100), False)
    check("value after touch", client.get(key("t")), b"touch me")
    check("touch to expire", client.touch(key("t"), -1), True)
    check("get after expiring touch", client.get(key("t")), None)

    # expiry
    check("set already expired", client.set(key("exp"), b"x", expire=-1), True)
    check("get expired", client.get(key("exp")), None)

    # noreply variants: results are unknown to the client; verify with get.
    client.set(key("nr"), b"1", noreply=True)
    check("set noreply", client.get(key("nr")), b"1")
    client.add(key("nr"), b"2", noreply=True)
    client.replace(key("nr"), b"3", noreply=True)
    client.append(key("nr"), b"4", noreply=True)
    client.prepend(key("nr"), b"0", noreply=True)
    check("add/replace/append/prepend noreply", client.get(key("nr")), b"034")
    client.set(key("nrn"), b"5", noreply=True)
    client.incr(key("nrn"), 10, noreply=True)
    client.decr(key("nrn"), 3, noreply=True)
    check("incr/decr noreply", client.get(key("nrn")), b"12")
    _, cas = client.gets(key("nr"))
    client.cas(key("nr"), b"cas-noreply", cas, noreply=True)
    check("cas noreply", client.get(key("nr")), b"cas-noreply")
    client.touch(key("nr"), 100, noreply=True)
    client.delete(key("nr"), noreply=True)
    check("touch/delete noreply", client.get(key("nr")), None)
    check("set_many", client.set_many({key("s1"): b"a", key("s2"): b"b"}), [])
    client.delete_many([key("s1"), key("s2")], noreply=True)
    check("delete_many noreply", client.get_many([key("s1"), key("s2")]), {})

    # version / stats
    version = client.version()
    check("version is 1.6.x", version.startswith(b"1.6."), True)
    if EXPECT_MCSTORE:
        check("version has mcstore suffix", b"-mcstore-" in version, True)
    stats = client.stats()
    for name in (b"pid", b"uptime", b"version", b"curr_connections", b"cmd_get", b"cmd_set",
                 b"get_hits", b"get_misses", b"curr_items", b"total_items"):
        check("stats has %s" % name.decode(), name in stats, True)
    check("stats version matches", stats[b"version"], version)

    # flush_all
    client.set(key("fl"), b"x")
    check("flush_all", client.flush_all(), True)
    check("get after flush_all", client.get(key("fl")), None)
    client.set(key("fl2"), b"y")
    check("set after flush_all", client.get(key("fl2")), b"y")
    client.flush_all(noreply=True)
    check("flush_all noreply", client.get(key("fl2")), None)

    client.quit()
    print("all pymemcache checks passed")


if __name__ == "__main__":
    main()
