//! The trader's view of one tenant, as the tenant and operators see it:
//! equity, net, realized, unrealized (with the part arbitrage locked) and
//! fees; an equity curve with the trades marked on it and daily PnL bars,
//! both on the data's own clock (a replay charts its recorded day); open
//! positions at their marks; PnL per strategy.
//!
//! Charts are SVG drawn here from integers and decimals (no script, no
//! library). Numbers are shown at the venues' precision: cents, prices to
//! four places, shares to two. The data comes from [`crate::data::read_pnl`]
//! (the API's own `/pnl`), the heartbeats' equity curve and the trades.

use chrono::{DateTime, Utc};
use polybot_store::TenantTx;
use polybot_store::repo::heartbeats::{self, EquityPoint};
use polybot_store::repo::trades::{self, DailyPnl, PnlPoint, Trade};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::{price, shares, signed, time, usd};
use crate::dashboard::Html;
use crate::data::{PnlView, read_pnl};
use crate::error::ApiResult;

/// About how many points a curve draws.
const CHART_POINTS: i64 = 300;
/// Days of daily bars.
const DAYS: i32 = 30;

/// What the trader view shows, read before it is rendered.
#[derive(Debug)]
pub(crate) struct Trader {
    pub pnl: PnlView,
    /// The newest run's equity from its heartbeats.
    pub equity: Vec<EquityPoint>,
    /// Realized PnL net of fees after each trade (when there is no equity curve).
    pub realized: Vec<PnlPoint>,
    pub daily: Vec<DailyPnl>,
}

pub(crate) async fn read(tx: &mut TenantTx) -> ApiResult<Trader> {
    Ok(Trader {
        pnl: read_pnl(tx).await?,
        equity: heartbeats::equity_curve(tx, CHART_POINTS).await?,
        realized: trades::pnl_curve(tx, CHART_POINTS).await?,
        daily: trades::daily(tx, DAYS).await?,
    })
}

fn parse(text: &str) -> Decimal {
    text.parse().unwrap_or_default()
}

fn card(h: &mut Html, label: &'static str, id: &'static str, value: Decimal) {
    let (class, text) = signed(value);
    h.raw("<div class=\"card\">")
        .raw(label)
        .raw(" <strong id=\"")
        .raw(id)
        .raw("\" class=\"")
        .raw(class)
        .raw("\">")
        .text(text)
        .raw("</strong></div>");
}

/// The figures, the charts, the positions and the strategies.
pub(crate) fn render(h: &mut Html, t: &Trader, trades: &[Trade]) {
    let p = &t.pnl;
    let realized = parse(&p.realized);
    let unrealized = p.unrealized.as_deref().map(parse);
    let fees = parse(&p.fees);
    h.raw("<section id=\"trader\"><div class=\"cards\">");
    match p.equity.as_deref() {
        Some(equity) => {
            h.raw("<div class=\"card\">Equity <strong id=\"equity\">")
                .text(usd(parse(equity)))
                .raw("</strong></div>");
        }
        None => {
            h.raw("<div class=\"card\">Equity <strong id=\"equity\">–</strong></div>");
        }
    }
    card(h, "Net PnL", "pnl-net", parse(&p.net));
    card(h, "Realized", "pnl-realized", realized);
    match unrealized {
        Some(u) => {
            let (class, text) = signed(u);
            h.raw("<div class=\"card\">Unrealized <strong id=\"pnl-unrealized\" class=\"")
                .raw(class)
                .raw("\">")
                .text(text)
                .raw("</strong>");
            if let Some(locked) = p.locked.as_deref().map(parse)
                && !locked.is_zero()
            {
                h.raw(" of which <strong id=\"pnl-locked\">")
                    .text(usd(locked))
                    .raw("</strong> locked by arbitrage");
            }
            h.raw("</div>");
        }
        None => {
            h.raw("<div class=\"card\">Unrealized <strong id=\"pnl-unrealized\">–</strong></div>");
        }
    }
    h.raw("<div class=\"card\">Fees <strong id=\"pnl-fees\">")
        .text(usd(fees))
        .raw("</strong></div>");
    match p.daily.as_deref() {
        Some(daily) => card(h, "PnL today", "pnl-today", parse(daily)),
        None => {
            h.raw("<div class=\"card\">PnL today <strong id=\"pnl-today\">–</strong></div>");
        }
    }
    h.raw("</div><p class=\"hint\">Net = realized + unrealized − fees = equity − starting equity");
    if let Some(at) = p.data_time {
        h.raw("; as of ")
            .text(time(Some(at)))
            .raw(" UTC on the data's clock");
    }
    h.raw(". Open positions are marked at the best bid; complete sets and cross-venue pairs at the 1 they pay.</p>");

    h.raw("<h2>Equity</h2>");
    equity_chart(h, t, trades);
    h.raw("<h2>Daily PnL</h2>");
    daily_bars(h, &t.daily);
    positions(h, p);
    strategies(h, p);
    h.raw("</section>");
}

/// A point of a curve: time (ms) and PnL.
struct Point {
    ms: i64,
    value: Decimal,
}

fn equity_chart(h: &mut Html, t: &Trader, trades: &[Trade]) {
    let (points, what): (Vec<Point>, &str) = if t.equity.len() >= 2 {
        (
            t.equity
                .iter()
                .map(|e| Point {
                    ms: e.clock,
                    value: parse(&e.pnl),
                })
                .collect(),
            "equity − starting equity, from the worker's reports",
        )
    } else {
        (
            t.realized
                .iter()
                .map(|p| Point {
                    ms: p.at.timestamp_millis(),
                    value: p.total,
                })
                .collect(),
            "realized PnL net of fees, from the trades",
        )
    };
    let [first, .., last] = points.as_slice() else {
        h.raw("<p id=\"pnl-chart\">No PnL to chart yet: the curve starts with the worker's first reports.</p>");
        return;
    };
    const W: i64 = 760;
    const H: i64 = 220;
    const LEFT: i64 = 64;
    const PAD: i64 = 12;
    const BOTTOM: i64 = 28;
    let (t0, t1) = (first.ms, last.ms);
    let span = (t1 - t0).max(1);
    let min = points
        .iter()
        .map(|p| p.value)
        .fold(Decimal::ZERO, Decimal::min);
    let max = points
        .iter()
        .map(|p| p.value)
        .fold(Decimal::ZERO, Decimal::max);
    let range = if max == min { Decimal::ONE } else { max - min };
    let y = |v: Decimal| -> i64 {
        PAD + ((max - v) * Decimal::from(H - PAD - BOTTOM) / range)
            .round()
            .to_i64()
            .unwrap_or(0)
    };
    let x = |ms: i64| -> i64 { LEFT + (ms - t0).clamp(0, span) * (W - LEFT - PAD) / span };
    let mut coords = String::new();
    for p in &points {
        coords.push_str(&format!("{},{} ", x(p.ms), y(p.value)));
    }
    let zero = y(Decimal::ZERO);
    h.raw("<svg id=\"pnl-chart\" class=\"chart\" role=\"img\" aria-label=\"PnL over time\" viewBox=\"0 0 760 220\">")
        .raw("<line x1=\"64\" x2=\"748\" stroke=\"#bbb\" stroke-dasharray=\"4\" y1=\"")
        .text(zero)
        .raw("\" y2=\"")
        .text(zero)
        .raw("\"/><polyline fill=\"none\" stroke=\"#2c6bed\" stroke-width=\"2\" points=\"")
        .text(coords.trim_end())
        .raw("\"/>");
    for (v, at) in [(max, y(max)), (Decimal::ZERO, zero), (min, y(min))] {
        h.raw("<text x=\"58\" text-anchor=\"end\" font-size=\"11\" y=\"")
            .text(at + 4)
            .raw("\">")
            .text(usd(v))
            .raw("</text>");
    }
    // The trades as markers on the time axis: buys green, sells red,
    // settlements blue; hovering one names it.
    let base = H - BOTTOM + 8;
    for trade in trades {
        let ms = trade.executed_at.timestamp_millis();
        if ms < t0 || ms > t1 {
            continue;
        }
        let colour = match trade.side.as_str() {
            "buy" => "#0b7a2a",
            "sell" => "#a40000",
            _ => "#2c6bed",
        };
        h.raw("<circle class=\"trade-marker\" r=\"3.5\" cx=\"")
            .text(x(ms))
            .raw("\" cy=\"")
            .text(base)
            .raw("\" fill=\"")
            .raw(colour)
            .raw("\"><title>")
            .text(format!(
                "{} {} {} {} {} @ {}",
                time(Some(trade.executed_at)),
                trade.strategy,
                trade.side,
                shares(trade.size),
                trade.outcome.as_deref().unwrap_or(""),
                price(trade.price)
            ))
            .raw("</title></circle>");
    }
    h.raw("<text x=\"64\" y=\"214\" font-size=\"11\">")
        .text(clock(t0))
        .raw("</text><text x=\"748\" y=\"214\" font-size=\"11\" text-anchor=\"end\">")
        .text(clock(t1))
        .raw("</text></svg><p class=\"hint\">")
        .text(what)
        .raw("; last <strong id=\"pnl-chart-last\">")
        .text(usd(last.value))
        .raw("</strong> (")
        .text(points.len())
        .raw(" points, UTC, the data's own time).</p>");
}

fn clock(ms: i64) -> String {
    time(DateTime::<Utc>::from_timestamp_millis(ms))
}

fn daily_bars(h: &mut Html, days: &[DailyPnl]) {
    if days.is_empty() {
        h.raw("<p id=\"daily-chart\">No trades yet.</p>");
        return;
    }
    const W: i64 = 760;
    const H: i64 = 160;
    const MID_PAD: i64 = 20;
    let nets: Vec<Decimal> = days.iter().map(|d| d.realized - d.fees).collect();
    let top = nets
        .iter()
        .map(|n| n.abs())
        .fold(Decimal::ZERO, Decimal::max)
        .max(Decimal::new(1, 2));
    let half = (H - 2 * MID_PAD) / 2;
    let mid = H / 2;
    let slot = (W - 16) / i64::try_from(days.len()).unwrap_or(1).max(1);
    let width = (slot * 2 / 3).clamp(2, 60);
    h.raw("<svg id=\"daily-chart\" class=\"chart\" role=\"img\" aria-label=\"PnL per day\" viewBox=\"0 0 760 160\">")
        .raw("<line x1=\"8\" x2=\"752\" stroke=\"#bbb\" y1=\"80\" y2=\"80\"/>");
    for (i, (day, net)) in days.iter().zip(&nets).enumerate() {
        let len = (net.abs() * Decimal::from(half) / top)
            .round()
            .to_i64()
            .unwrap_or(0)
            .max(1);
        let x = 8 + i64::try_from(i).unwrap_or(0) * slot + (slot - width) / 2;
        let (y, colour) = if net.is_sign_negative() && !net.is_zero() {
            (mid, "#d9534f")
        } else {
            (mid - len, "#3a9d5d")
        };
        h.raw("<rect class=\"day-bar\" x=\"")
            .text(x)
            .raw("\" y=\"")
            .text(y)
            .raw("\" width=\"")
            .text(width)
            .raw("\" height=\"")
            .text(len)
            .raw("\" fill=\"")
            .raw(colour)
            .raw("\"><title>")
            .text(format!(
                "{}: {} net ({} realized − {} fees, {} trades)",
                day.day,
                usd(*net),
                usd(day.realized),
                usd(day.fees),
                day.trades
            ))
            .raw("</title></rect><text font-size=\"10\" text-anchor=\"middle\" x=\"")
            .text(x + width / 2)
            .raw("\" y=\"")
            .text(if y < mid { y - 3 } else { y + len + 11 })
            .raw("\">")
            .text(usd(*net))
            .raw("</text><text font-size=\"10\" text-anchor=\"middle\" y=\"156\" x=\"")
            .text(x + width / 2)
            .raw("\">")
            .text(day.day.format("%m-%d"))
            .raw("</text>");
    }
    h.raw(
        "</svg><p class=\"hint\">Realized PnL minus fees per UTC day of the trades' own dates.</p>",
    );
}

fn positions(h: &mut Html, p: &PnlView) {
    h.raw("<h2>Open positions</h2>");
    if p.positions.is_empty() {
        h.raw("<p id=\"positions-none\">None open");
        if p.trades > 0 {
            h.raw(": every position bought has been settled or sold");
        }
        h.raw(".</p>");
        return;
    }
    h.raw("<div class=\"scroll\"><table id=\"positions\"><tr><th>Strategy</th><th>Venue</th><th>Market</th><th>Outcome</th><th class=\"num\">Shares</th><th class=\"num\">Avg price</th><th class=\"num\">Mark</th><th class=\"num\">In sets / pairs</th><th class=\"num\">Unrealized at mark</th></tr>");
    for pos in &p.positions {
        let qty = parse(&pos.quantity);
        let avg = parse(&pos.avg_price);
        let mark = parse(&pos.mark);
        let locked = parse(&pos.locked);
        h.el("<tr><td>", &pos.strategy, "</td>")
            .el("<td>", &pos.venue, "</td>")
            .el("<td>", &pos.market, "</td>")
            .el("<td>", &pos.outcome, "</td>")
            .el("<td class=\"num\">", shares(qty), "</td>")
            .el("<td class=\"num\">", price(avg), "</td>")
            .el("<td class=\"num\">", price(mark), "</td>")
            .el(
                "<td class=\"num\">",
                if locked.is_zero() {
                    "–".to_owned()
                } else {
                    shares(locked)
                },
                "</td>",
            );
        // The part outside sets and pairs, at the bid; the rest pays 1.
        let (class, text) = signed((qty - locked) * (mark - avg));
        h.raw("<td class=\"")
            .raw(class)
            .raw("\">")
            .text(text)
            .raw("</td></tr>");
    }
    h.raw("</table></div>");
}

fn strategies(h: &mut Html, p: &PnlView) {
    h.raw("<h2>PnL by strategy</h2>");
    if p.by_strategy.is_empty() {
        h.raw("<p>No strategy has traded yet.</p>");
        return;
    }
    h.raw("<div class=\"scroll\"><table id=\"strategy-pnl\"><tr><th>Strategy</th><th class=\"num\">Trades</th><th class=\"num\">Realized</th><th class=\"num\">Unrealized</th><th class=\"num\">Locked</th><th class=\"num\">Fees</th><th class=\"num\">Net</th></tr>");
    for s in &p.by_strategy {
        let realized = parse(&s.realized);
        let fees = parse(&s.fees);
        let unrealized = s.unrealized.as_deref().map(parse);
        h.el("<tr><td>", &s.strategy, "</td>")
            .el("<td class=\"num\">", s.trades, "</td>")
            .el("<td class=\"num\">", usd(realized), "</td>")
            .el(
                "<td class=\"num\">",
                unrealized.map_or_else(|| "–".to_owned(), usd),
                "</td>",
            )
            .el(
                "<td class=\"num\">",
                s.locked
                    .as_deref()
                    .map_or_else(|| "–".to_owned(), |l| usd(parse(l))),
                "</td>",
            )
            .el("<td class=\"num\">", usd(fees), "</td>");
        let (class, text) = signed(realized + unrealized.unwrap_or_default() - fees);
        h.raw("<td class=\"")
            .raw(class)
            .raw("\">")
            .text(text)
            .raw("</td></tr>");
    }
    h.raw("</table></div>");
}
