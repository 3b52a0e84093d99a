"""pymemcache's HashClient against a cluster: the client spreads keys over
the nodes with its own hashing (rendezvous, not ketama), so most requests
land on a node that does not own the key and are forwarded. Every key must
read back, through the HashClient and through a plain client of one node.

    python3 tests/python/hash_client_exercise.py PORT PORT PORT
"""
import sys

from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

ports = [int(p) for p in sys.argv[1:]]
servers = [("127.0.0.1", p) for p in ports]
client = HashClient(servers, connect_timeout=5, timeout=5, dead_timeout=5)
keys = [f"hash-client-{i}" for i in range(300)]
for key in keys:
    assert client.set(key, key.upper(), expire=0, noreply=False), key
values = client.get_many(keys)
assert values == {k: k.upper().encode() for k in keys}, "get_many through the HashClient"
single = Client(servers[0], connect_timeout=5, timeout=5)
for key in keys[::7]:
    assert single.get(key) == key.upper().encode(), key
assert client.incr("hash-client-counter", 1) is None
client.set("hash-client-counter", "41")
assert client.incr("hash-client-counter", 1) == 42
assert single.get("hash-client-counter") == b"42"
assert client.delete("hash-client-0", noreply=False)
assert single.get("hash-client-0") is None
print(f"HashClient over {len(ports)} nodes: {len(keys)} keys written and read back")
