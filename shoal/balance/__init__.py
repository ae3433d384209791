"""Client-side load balancing: pure policies that pick a host for each request.

`make_balancer(policy, rng, local_zone=..., slow_start=..., **options)` returns a
`Balancer` for one of `POLICIES`:

=====================  ================================================  ===============
policy                 what it does                                      pick costs
=====================  ================================================  ===============
round_robin            each host in turn, from a random start            O(1)
weighted_round_robin   nginx's smooth weighted round robin               O(n)
random                 uniform                                           O(1)
weighted_random        by weight, bisect over prefix sums                O(log n)
least_request          P2C on outstanding requests (Envoy)               O(1)
peak_ewma              P2C on peak-EWMA latency x load (Finagle/Linkerd) O(1)
ring_hash              consistent hash ring with virtual nodes           O(log n)
maglev                 Maglev lookup table (65537 slots)                 O(1)
=====================  ================================================  ===============

plus zone-aware preference and slow start around any policy that can take them. The
caller feeds it the pool (`update`), asks for a host (`pick`), and reports each request
(`started`, `finished`). docs/balancing.md says when to use which, and where every
default comes from.

Pure: no I/O, no clock, no global randomness. `now` is the caller's monotonic clock in
seconds; randomness comes only from the `random.Random` passed to `make_balancer`, so a
seed replays a run exactly. Not thread-safe: one owner (an event loop) per balancer.
"""

from .errors import BalanceError
from .factory import POLICIES, make_balancer, policy_options
from .host import Balancer, Host, HostLoad

__all__ = [
    "POLICIES",
    "BalanceError",
    "Balancer",
    "Host",
    "HostLoad",
    "make_balancer",
    "policy_options",
]
