"""Polls the proxy's routing table every 10 ms: from the first moment the canary
(2.0.0) has a weight above 0 to the first moment after it that it has 0 again.
Prints {"on_ms", "off_ms", "rollback_ms"} (unix ms) as one JSON line.

usage: watch.py ADMIN_URL TOKEN TIMEOUT_SECONDS
"""
import json
import sys
import time
import urllib.request

admin, token, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
req = urllib.request.Request(f"{admin}/routing", headers={"authorization": f"Bearer {token}"})
deadline = time.time() + timeout
on = None
while time.time() < deadline:
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            weight = json.load(r).get("weights", {}).get("2.0.0", 0)
    except OSError:
        weight = None
    now = time.time() * 1000
    if weight is not None:
        if on is None and weight > 0:
            on = now
        elif on is not None and weight == 0:
            print(json.dumps({"on_ms": on, "off_ms": now, "rollback_ms": now - on}))
            sys.exit(0)
    time.sleep(0.01)
print(json.dumps({"error": "timed out", "on_ms": on}))
sys.exit(1)
