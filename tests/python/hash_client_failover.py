"""pymemcache's HashClient over a cluster, through a node's death: keys are
written, then (the test kills a node between the two phases) every key must
still read back. The HashClient marks the dead node dead (dead_timeout) and
rehashes its keys to the other nodes, which forward them to the key's next
live replica.

    python3 tests/python/hash_client_failover.py write|read PORT PORT PORT
"""
import sys
import time

from pymemcache.client.hash import HashClient

phase = sys.argv[1]
servers = [("127.0.0.1", int(p)) for p in sys.argv[2:]]
client = HashClient(
    servers,
    connect_timeout=1,
    timeout=2,
    retry_attempts=1,
    retry_timeout=1,
    dead_timeout=60,
)
keys = [f"failover-{i}" for i in range(200)]
if phase == "write":
    for key in keys:
        assert client.set(key, key[::-1], expire=0, noreply=False), key
    print(f"wrote {len(keys)} keys")
else:
    deadline = time.time() + 60
    missing = list(keys)
    while missing and time.time() < deadline:
        if missing != keys:
            time.sleep(0.1)
        still = []
        for key in missing:
            try:
                value = client.get(key)
            except Exception:  # the dead node, until it is marked dead
                still.append(key)
                continue
            if value is None:
                # The HashClient answers a miss for a server it is about to
                # mark dead; ask again once it has rehashed the key.
                still.append(key)
                continue
            assert value == key[::-1].encode(), (key, value)
        missing = still
    assert not missing, f"{len(missing)} keys never read back: {missing[:5]}"
    print(f"read back all {len(keys)} keys after a node died")
