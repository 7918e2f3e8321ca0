"""A fleet coming back after an attestor outage: does it stampede?

Event-driven simulation of N agents running the agent's own scheduling code
(:func:`agent.renew.renewal_time`, :class:`agent.renew.Backoff`,
:func:`agent.renew.before_expiry`) against a model of the attestor: it serves
``capacity`` renewals per second and sheds the excess with 429 and a jittered
Retry-After (as ``rate_limits.max_inflight`` does); during the outage every
attempt fails to connect. The fleet starts in steady state (certificates
spread over their lifetime). Reported: request rate before the outage (steady),
the peak after it (in ``window``-second bins), their ratio, 429s sent, and
certificates that expired (must be 0).

This simulates the agents' algorithm, not the HTTP stack: the attestor's
real shedding is tested in tests/attestor/test_ratelimit.py and its real
throughput measured by bench/attestor_throughput.py (whose rate is the default
capacity here).

Usage: python -m bench.outage_recovery [--agents 5000] [--outage 120] [--capacity 60]
Last line: peak_to_steady=<ratio> shed=<429s> expired=<count>
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agent.renew import Backoff, before_expiry, renewal_time

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=seconds)


@dataclass
class Agent:
    not_before: float
    not_after: float
    backoff: Backoff
    failures: int = 0


@dataclass
class Result:
    steady: float
    peak: float
    peak_at: float
    shed: int
    expired: int
    attempts: Counter[int] = field(default_factory=Counter)

    @property
    def ratio(self) -> float:
        return self.peak / self.steady if self.steady else float("inf")


def simulate(agents: int, lifetime: float, outage_start: float, outage: float,
             capacity: float, retry_after: int, window: float, seed: int = 1) -> Result:
    rng = random.Random(seed)
    fleet = []
    queue: list[tuple[float, int]] = []
    for index in range(agents):
        issued = -rng.uniform(0, lifetime * 0.6)  # steady state: certificates of all ages
        agent = Agent(issued, issued + lifetime, Backoff(rng=random.Random(rng.random())))
        fleet.append(agent)
        due = renewal_time(at(issued), at(issued + lifetime), 2 / 3, rng)
        heapq.heappush(queue, ((due - EPOCH).total_seconds(), index))
    horizon = outage_start + outage + 2 * lifetime
    served: Counter[int] = Counter()  # capacity used per second
    attempts: Counter[int] = Counter()  # requests per window
    shed = expired = 0
    while queue:
        now, index = heapq.heappop(queue)
        if now > horizon:
            break
        agent = fleet[index]
        if now >= agent.not_after:
            expired += 1
            agent.not_after = float("inf")  # count once
        attempts[int(now // window)] += 1
        second = int(now)
        if outage_start <= now < outage_start + outage:
            delay = agent.backoff.next_delay(None)
        elif served[second] >= capacity:
            shed += 1
            wait = retry_after + rng.randint(0, retry_after)
            delay = agent.backoff.next_delay(wait)
        else:
            served[second] += 1
            agent.backoff.reset()
            agent.not_before, agent.not_after = now, now + lifetime
            due = renewal_time(at(now), at(now + lifetime), 2 / 3, rng)
            heapq.heappush(queue, ((due - EPOCH).total_seconds(), index))
            continue
        delay = before_expiry(delay, at(agent.not_after) if agent.not_after < float("inf")
                              else None, at(now))
        heapq.heappush(queue, (now + delay, index))
    before = [attempts[w] for w in range(int(outage_start // window) - int(600 // window),
                                         int(outage_start // window))]
    steady = sum(before) / (len(before) * window)
    after_start = int((outage_start + outage) // window)
    after = {w: attempts[w] for w in range(after_start, after_start + int(1800 // window))}
    peak_window = max(after, key=lambda w: after[w])
    return Result(steady, after[peak_window] / window, peak_window * window, shed, expired,
                  attempts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--lifetime", type=float, default=3600.0, help="certificate lifetime, s")
    parser.add_argument("--outage", type=float, default=120.0, help="seconds")
    parser.add_argument("--capacity", type=float, default=60.0,
                        help="renewals/s the attestor serves (bench/attestor_throughput.py)")
    parser.add_argument("--retry-after", type=int, default=5)
    parser.add_argument("--window", type=float, default=60.0, help="rate bin, seconds")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    start = 2 * args.lifetime
    rows = []
    # the measured capacity, and one only 1.5x the steady load (shedding at recovery)
    for capacity in (args.capacity, 1.5 * args.agents / (args.lifetime * 2 / 3)):
        for window in sorted({10.0, args.window}):
            r = simulate(args.agents, args.lifetime, start, args.outage, capacity,
                         args.retry_after, window)
            rows.append((capacity, window, r))
    lines = [f"`python -m bench.outage_recovery --agents {args.agents} --outage "
             f"{args.outage:g}`: {args.agents} agents, {args.lifetime / 60:g}-minute "
             f"certificates, a {args.outage:g} s outage starting in steady state.", "",
             "| attestor capacity (renewals/s) | rate bin | steady rate (req/s) | "
             "peak after (req/s) | peak / steady | 429s | expired |",
             "|---:|---:|---:|---:|---:|---:|---:|",
             *[f"| {c:.1f} | {w:g} s | {r.steady:.2f} | {r.peak:.2f} | {r.ratio:.2f} | "
               f"{r.shed} | {r.expired} |" for c, w, r in rows]]
    print("\n".join(lines))
    if args.write:
        from bench.report import write_section

        write_section(args.write, "outage-recovery", "Outage recovery (bench/outage_recovery.py)",
                      lines)
    first = next(r for c, w, r in rows if w == args.window)
    print(f"peak_to_steady={first.ratio:.2f} shed={first.shed} expired={first.expired}")


if __name__ == "__main__":
    main()
