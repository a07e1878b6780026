#!/usr/bin/env python3
"""Writes data/replay/demo.jsonl, the recording behind `polybot up --demo`.

The recording is crafted, not captured: the shapes and magnitudes follow
../shared/VENUES.md (Polymarket books with string prices and both sides,
Kalshi books as bids only, the 15-minute `btc-updown-15m-<start>` window with
Binance US / Coinbase / Kraken spot, taker fee rates per category), and the
mispricings are placed so that each of the four strategies finds an
opportunity within the first seconds and again every minute or so:

- complement arbitrage: a Polymarket multi-outcome market and a binary one
  whose asks sum below 1 minus fees for a few seconds at a time;
- cross-venue arbitrage: a Polymarket / Kalshi pair on BTC above 94,000 at
  10 AM ET (same resolution source and close) drifting apart now and then;
  the 15-minute pair is listed too and is blocked (resolution sources differ);
- 15-minute up/down: a market maker that re-quotes from spot a few seconds
  late, so that fast spot moves leave a stale ask;
- news: headlines matched by the demo tenant's rules, among others that are not.

Deterministic (fixed seed): running it again gives the same file. Usage:
    python3 data/replay/make_demo.py > data/replay/demo.jsonl
Real recordings come from `polybot record --out FILE --seconds N`.
"""

import json
import math
import random
import sys

rng = random.Random(20260429)

W = 1777467600  # window start, 2026-04-29 13:00 UTC (9:00 AM ET)
START = (W - 4) * 1000  # the recording begins 4 s before the window opens
END = (W + 900) * 1000  # the window closes
HOUR_CLOSE = (W + 3600) * 1000

lines = []


def emit(ts, obj):
    obj = {"type": obj.pop("type"), "ts": int(ts), **obj}
    lines.append((int(ts), len(lines), obj))


def px(x):
    """A price as the venues send it: a string with two decimals."""
    return f"{min(max(x, 0.01), 0.99):.2f}"


def sz(x):
    return str(int(round(x)))


def ladder(best, step, n, base_size, direction):
    """n levels from `best`, moving by `step` in `direction` (+1 asks, -1 bids)."""
    out = []
    for i in range(n):
        p = best + direction * step * i
        if 0.005 < p < 0.995:
            out.append([px(p), sz(base_size * (1 + 0.6 * i) * rng.uniform(0.7, 1.3))])
    return out


def phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


# --- market listings ---------------------------------------------------------

UPDOWN = f"btc-updown-15m-{W}"
K15 = "KXBTC15M-26APR290915"
PM_HOURLY = "bitcoin-above-94k-on-april-29-10am-et"
K_HOURLY = "KXBTCD-26APR2910-T94000"
CUTS = "how-many-fed-rate-cuts-in-2026"
ETH = "will-ethereum-reach-5000-in-june"
FED = "fed-decision-in-june-cut-25bps"
SOL = "sec-approves-solana-etf-by-june-30"

markets = [
    dict(market=UPDOWN, venue="polymarket", outcomes=["Up", "Down"], fee_rate="0.07",
         question="Bitcoin Up or Down - April 29, 9:00AM-9:15AM ET",
         resolution_source="https://data.chain.link/streams/btc-usd",
         window_start=W * 1000, closes_at=END, asset="BTC", direction="up"),
    dict(market=K15, venue="kalshi", outcomes=["Yes", "No"], fee_rate="0.07",
         question="BTC price up in next 15 mins?",
         resolution_source="CF Benchmarks BRTI, 60-second average",
         window_start=W * 1000, closes_at=END, asset="BTC", direction="up"),
    dict(market=PM_HOURLY, venue="polymarket", outcomes=["Yes", "No"], fee_rate="0.07",
         question="Bitcoin above 94,000 on April 29, 10AM ET?",
         resolution_source="https://www.cfbenchmarks.com/data/indices/BRTI",
         closes_at=HOUR_CLOSE, asset="BTC", direction="above", strike="94000"),
    dict(market=K_HOURLY, venue="kalshi", outcomes=["Yes", "No"], fee_rate="0.07",
         question="Bitcoin price on Apr 29, 2026 at 10am EDT? $94,000 or above",
         resolution_source="cfbenchmarks.com/data/indices/BRTI",
         closes_at=HOUR_CLOSE, asset="BTC", direction="above", strike="94000.00"),
    dict(market=CUTS, venue="polymarket", outcomes=["0", "1", "2", "3", "4+"], fee_rate="0.05",
         question="How many Fed rate cuts in 2026?"),
    dict(market=ETH, venue="polymarket", outcomes=["Yes", "No"], fee_rate="0.07",
         question="Will Ethereum reach $5,000 in June?"),
    dict(market=FED, venue="polymarket", outcomes=["Yes", "No"], fee_rate="0.05",
         question="Fed decreases interest rates by 25 bps after June 2026 meeting?"),
    dict(market=SOL, venue="polymarket", outcomes=["Yes", "No"], fee_rate="0.04",
         question="SEC approves a spot Solana ETF by June 30?"),
]
for m in markets:
    emit(START, {"type": "market", **m})

# --- spot: a random walk, three venues a few basis points apart ----------------

spot = {}  # second -> composite price
price = 94012.40
seconds = range(START // 1000, END // 1000 + 8)
# Scripted moves (per-second log returns) on top of the noise: a gentle rise
# right after the open, then a few sharp moves the market maker is late on.
script = {W + 1: 1.6e-4, W + 2: 1.6e-4, W + 3: 1.4e-4}
for t0, size in [(W + 150, 6e-4), (W + 330, -7e-4), (W + 520, 6.5e-4), (W + 700, -6e-4)]:
    script[t0] = size / 2
    script[t0 + 1] = size / 2
for s in seconds:
    if s > START // 1000:
        r = script.get(s, rng.gauss(0, 0.9e-4) if s >= W else rng.gauss(0, 0.3e-4))
        price *= math.exp(r)
    spot[s] = price
    for venue, offset_ms, bias in (("binance_us", 60, -1.5), ("coinbase", 210, 0.0), ("kraken", 430, 2.0)):
        quoted = price + bias + rng.uniform(-0.8, 0.8)
        emit(s * 1000 + offset_ms, {"type": "spot", "venue": venue, "asset": "BTC", "price": f"{quoted:.2f}"})

open_price = spot[W]

# --- the 15-minute window: a market maker quoting from spot, a few seconds late

def fair_up(s, lag):
    ref = spot.get(s - lag, open_price)
    tau = max(END / 1000 - s, 1)
    sigma = 1.0e-4 * math.sqrt(tau)
    return phi(math.log(ref / open_price) / sigma)


quoted_mid = 0.50
for s in range(W, END // 1000):
    # Re-quote every 4 s, from the spot of 3 s ago; in between the book stands.
    if (s - W) % 4 == 0 and s > W + 3:
        quoted_mid = fair_up(s, 3)
    mid = min(max(quoted_mid, 0.03), 0.97)
    up_ask, up_bid = mid + 0.01, mid - 0.01
    emit(s * 1000 + 500, {"type": "book", "market": UPDOWN, "outcome": "Up",
                          "bids": ladder(up_bid, 0.01, 4, 120, -1), "asks": ladder(up_ask, 0.01, 4, 120, +1)})
    emit(s * 1000 + 520, {"type": "book", "market": UPDOWN, "outcome": "Down",
                          "bids": ladder(1 - up_ask, 0.01, 4, 120, -1), "asks": ladder(1 - up_bid, 0.01, 4, 120, +1)})
    if s % 2 == 0:
        k_mid = fair_up(s, 1)
        emit(s * 1000 + 700, {"type": "book", "market": K15, "outcome": "Yes",
                              "bids": ladder(k_mid - 0.02, 0.01, 5, 80, -1)})
        emit(s * 1000 + 710, {"type": "book", "market": K15, "outcome": "No",
                              "bids": ladder(1 - k_mid - 0.02, 0.01, 5, 80, -1)})
    if s % 7 == 3:
        emit(s * 1000 + 800, {"type": "trade", "market": UPDOWN, "outcome": "Up",
                              "price": px(mid), "size": sz(rng.uniform(5, 60)), "side": rng.choice(["buy", "sell"])})

# --- the hourly pair: consistent quotes, dislocated every minute for 3 s --------

def hourly_fair(s):
    tau = max(HOUR_CLOSE / 1000 - s, 1)
    sigma = 1.0e-4 * math.sqrt(tau)
    return phi(math.log(spot[s] / 94000.0) / sigma)


for s in range(START // 1000, END // 1000, 2):
    f = hourly_fair(s)
    phase = (s - (W - 2)) % 60
    gap = 0.035 if phase < 3 else 0.0  # Polymarket YES cheap, Kalshi YES rich
    pm_yes_ask = f + 0.01 - gap
    k_yes_bid = f - 0.01 + gap
    emit(s * 1000 + 100, {"type": "book", "market": PM_HOURLY, "outcome": "Yes",
                          "bids": ladder(pm_yes_ask - 0.02, 0.01, 5, 150, -1),
                          "asks": ladder(pm_yes_ask, 0.01, 5, 150, +1)})
    emit(s * 1000 + 110, {"type": "book", "market": PM_HOURLY, "outcome": "No",
                          "bids": ladder(1 - pm_yes_ask - 0.01, 0.01, 5, 150, -1),
                          "asks": ladder(1 - pm_yes_ask + 0.03, 0.01, 5, 150, +1)})
    emit(s * 1000 + 300, {"type": "book", "market": K_HOURLY, "outcome": "Yes",
                          "bids": ladder(k_yes_bid, 0.01, 5, 100, -1)})
    emit(s * 1000 + 310, {"type": "book", "market": K_HOURLY, "outcome": "No",
                          "bids": ladder(1 - k_yes_bid - 0.03, 0.01, 5, 100, -1)})

# --- complement markets: asks sum below 1 for a few seconds every 45 s ----------

cuts_fair = [0.08, 0.22, 0.34, 0.24, 0.12]
for s in range(START // 1000, END // 1000, 3):
    dislocated = (s - (W - 3)) % 45 < 3
    weights = [f * rng.uniform(0.97, 1.03) for f in cuts_fair]
    total = sum(weights)
    for i, name in enumerate(["0", "1", "2", "3", "4+"]):
        fair = weights[i] / total
        ask = fair + (0.0 if dislocated and i in (1, 2, 3) else 0.012) - (0.022 if dislocated and i in (1, 2, 3) else 0.0)
        emit(s * 1000 + 900 + i, {"type": "book", "market": CUTS, "outcome": name,
                                   "bids": ladder(ask - 0.02, 0.01, 3, 400, -1),
                                   "asks": ladder(ask, 0.01, 3, 400, +1)})
    eth_yes = 0.31 + rng.uniform(-0.01, 0.01)
    eth_dislocated = (s - (W + 18)) % 60 < 3
    yes_ask = eth_yes - (0.02 if eth_dislocated else 0.0)
    no_ask = 1 - eth_yes + (0.005 if eth_dislocated else 0.02) - (0.02 if eth_dislocated else 0.0)
    emit(s * 1000 + 950, {"type": "book", "market": ETH, "outcome": "Yes",
                          "bids": ladder(yes_ask - 0.02, 0.01, 4, 300, -1), "asks": ladder(yes_ask, 0.01, 4, 300, +1)})
    emit(s * 1000 + 960, {"type": "book", "market": ETH, "outcome": "No",
                          "bids": ladder(no_ask - 0.02, 0.01, 4, 300, -1), "asks": ladder(no_ask, 0.01, 4, 300, +1)})

# --- news markets and headlines -------------------------------------------------

news_quotes = {FED: 0.62, SOL: 0.71}
for s in range(START // 1000, END // 1000, 5):
    for market, yes in news_quotes.items():
        yes = yes + rng.uniform(-0.005, 0.005)
        emit(s * 1000 + 650, {"type": "book", "market": market, "outcome": "Yes",
                              "bids": ladder(yes - 0.02, 0.01, 4, 250, -1), "asks": ladder(yes, 0.01, 4, 250, +1)})
        emit(s * 1000 + 660, {"type": "book", "market": market, "outcome": "No",
                              "bids": ladder(1 - yes - 0.02, 0.01, 4, 250, -1), "asks": ladder(1 - yes + 0.01, 0.01, 4, 250, +1)})

headlines = [
    (W - 2, "Reuters", "Fed officials signal a June rate cut as inflation cools",
     "Two Fed governors said a 25 bps cut in June is likely if price data keep easing."),
    (W + 40, "CoinDesk", "Bitcoin miners post record hashrate ahead of difficulty adjustment", ""),
    (W + 95, "Bloomberg", "Treasury yields slip after weak retail sales", ""),
    (W + 170, "Reuters", "SEC approves first spot Solana ETFs, trading to begin next week",
     "The approval covers filings from several issuers."),
    (W + 260, "CNBC", "Fed holds rates steady, Powell says no rush to move", ""),
    (W + 390, "The Block", "Ethereum gas fees fall to multi-year lows", ""),
    (W + 430, "Bloomberg", "Fed's Waller: case for a June cut is strengthening",
     "Waller says the labor market has cooled enough."),
    (W + 610, "CoinDesk", "SEC delays decision on Solana staking ETF", ""),
    (W + 760, "Reuters", "Solana ETF approved: SEC gives green light to spot products, sources say",
     "SEC approves listings after months of review."),
]
for i, (s, source, title, summary) in enumerate(headlines):
    slug = "-".join(title.lower().replace(",", "").replace(":", "").replace("'", "").split()[:8])
    obj = {"type": "headline", "id": f"https://news.example/{s}/{slug}", "source": source, "title": title}
    if summary:
        obj["summary"] = summary
    obj["published"] = s * 1000 - 1500
    emit(s * 1000 + 300, obj)

# --- resolutions --------------------------------------------------------------

final = spot[END // 1000]
emit(END + 5000, {"type": "resolved", "market": UPDOWN, "outcome": "Up" if final >= open_price else "Down"})
emit(END + 5000, {"type": "resolved", "market": K15, "outcome": "Yes" if final >= open_price else "No"})
emit(END + 6000, {"type": "tick"})

lines.sort(key=lambda x: (x[0], x[1]))
out = sys.stdout
out.write("# PolyBot demo recording (crafted; see data/replay/make_demo.py). Engine JSONL replay format.\n")
out.write(f"# 15-minute window {UPDOWN}: opens {W * 1000}, closes {END}. {len(lines)} events.\n")
for _, _, obj in lines:
    out.write(json.dumps(obj, separators=(",", ":")) + "\n")
