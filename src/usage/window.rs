//! One counter's calls and amounts in time buckets: by the second for the last minute, by the
//! minute for the last day, and a running total for counters without a window (sessions).
use std::collections::VecDeque;

use super::{Amount, DAY_MS, HOUR_MS, MINUTE_MS};

/// The windows, by name suffix and length (ms); their buckets: a second for the minute, a minute
/// for the hour and the day.
pub const WINDOWS: [(&str, i64); 3] = [("1m", MINUTE_MS), ("1h", HOUR_MS), ("24h", DAY_MS)];

/// Bucket length of each window, in milliseconds.
pub(super) const BUCKETS: [i64; 3] = [1_000, MINUTE_MS, MINUTE_MS];

/// Whether a bucket starting at `start` (of `bucket` ms) still counts in a window of `window` ms
/// at `now`: until its last instant has been in for the whole window.
pub(super) fn counts(start: i64, bucket: i64, window: i64, now: i64) -> bool {
    start + bucket + window > now
}

/// A key's counts at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Calls per window ([`WINDOWS`] order).
    pub calls: [i64; 3],
    pub amount: [Amount; 3],
    /// When the oldest counted bucket of each window leaves it (ms since the epoch).
    pub leaves_at: [Option<i64>; 3],
    /// Without a window (sessions): every counted call.
    pub total_calls: i64,
    pub total_amount: Amount,
}

/// One window's buckets, oldest first, and their sums: a read is a prune and the sums, whatever
/// the traffic (a busy key's day holds up to 1,440 buckets, which summing on every decision
/// made the counting's most expensive step).
#[derive(Debug)]
struct Buckets {
    /// Window and bucket length (ms).
    window: i64,
    bucket: i64,
    /// (bucket start ms, calls, amount).
    buckets: VecDeque<(i64, i64, Amount)>,
    /// Wide, so taking a bucket back out undoes adding it even where an `Amount` would have
    /// saturated.
    calls: i64,
    amount: i128,
}

impl Buckets {
    fn new(i: usize) -> Self {
        Self {
            window: WINDOWS[i].1,
            bucket: BUCKETS[i],
            buckets: VecDeque::new(),
            calls: 0,
            amount: 0,
        }
    }

    fn add(&mut self, at: i64, calls: i64, amount: Amount) {
        self.calls += calls;
        self.amount += i128::from(amount.0);
        let start = at - at.rem_euclid(self.bucket);
        // Calls arrive in time order but for a clock step back or a restore out of order: find
        // the bucket from the back.
        match self.buckets.iter_mut().rev().find(|(s, ..)| *s <= start) {
            Some(bucket) if bucket.0 == start => {
                bucket.1 += calls;
                bucket.2 = bucket.2.saturating_add(amount);
            }
            _ => {
                let at = self.buckets.partition_point(|(s, ..)| *s < start);
                self.buckets.insert(at, (start, calls, amount));
            }
        }
    }

    /// Drops the buckets that no longer count at `now`: always a prefix, since the buckets are
    /// in order of start.
    fn prune(&mut self, now: i64) {
        while let Some(&(start, calls, amount)) = self.buckets.front() {
            if counts(start, self.bucket, self.window, now) {
                break;
            }
            self.buckets.pop_front();
            self.calls -= calls;
            self.amount -= i128::from(amount.0);
        }
    }

    /// Calls, amount, and when the oldest counted bucket leaves, after a prune.
    fn sums(&self) -> (i64, Amount, Option<i64>) {
        let amount = self.amount.clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        let leaves = self
            .buckets
            .front()
            .map(|(start, ..)| start + self.bucket + self.window);
        (self.calls, Amount(amount), leaves)
    }
}

#[derive(Debug)]
pub(super) struct Window {
    /// [`WINDOWS`] order: the minute by the second, the hour and the day by the minute.
    windows: [Buckets; 3],
    total_calls: i64,
    total_amount: Amount,
    /// The last call counted (ms), to forget idle sessions.
    pub last: i64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            windows: [Buckets::new(0), Buckets::new(1), Buckets::new(2)],
            total_calls: 0,
            total_amount: Amount::default(),
            last: 0,
        }
    }
}

impl Window {
    pub fn add(&mut self, at: i64, calls: i64, amount: Amount) {
        self.total_calls += calls;
        self.total_amount = self.total_amount.saturating_add(amount);
        self.last = self.last.max(at);
        for w in &mut self.windows {
            w.add(at, calls, amount);
        }
    }

    fn prune(&mut self, now: i64) {
        for w in &mut self.windows {
            w.prune(now);
        }
    }

    pub fn totals(&mut self, now: i64) -> Totals {
        self.prune(now);
        let mut t = Totals {
            total_calls: self.total_calls,
            total_amount: self.total_amount,
            ..Totals::default()
        };
        for (i, w) in self.windows.iter().enumerate() {
            (t.calls[i], t.amount[i], t.leaves_at[i]) = w.sums();
        }
        t
    }

    /// Whether nothing counts any more at `now` and the session has been idle for a day.
    pub fn idle(&mut self, now: i64) -> bool {
        self.prune(now);
        self.windows.iter().all(|w| w.buckets.is_empty()) && now - self.last > DAY_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_counts_for_the_whole_window_and_at_most_one_bucket_more() {
        let mut w = Window::default();
        let t0 = 1_000_000_500; // half-way through a second
        w.add(t0, 1, Amount(0));
        assert_eq!(w.totals(t0).calls, [1, 1, 1]);
        // Still counted a full minute later, gone one second after that.
        assert_eq!(w.totals(t0 + MINUTE_MS).calls[0], 1);
        assert_eq!(w.totals(t0 + MINUTE_MS + 500).calls[0], 0);
        let hour = w.totals(t0 + HOUR_MS);
        assert_eq!((hour.calls[1], hour.calls[2]), (1, 1));
        assert_eq!(w.totals(t0 + HOUR_MS + MINUTE_MS).calls[1], 0);
        assert_eq!(w.totals(t0 + DAY_MS + MINUTE_MS).calls[2], 0);
        assert_eq!(w.totals(t0 + DAY_MS + MINUTE_MS).total_calls, 1);
    }

    #[test]
    fn the_oldest_counted_bucket_says_when_the_count_drops() {
        let mut w = Window::default();
        w.add(10_000, 1, Amount(0));
        w.add(30_000, 2, Amount(5));
        let t = w.totals(40_000);
        assert_eq!(t.calls[0], 3);
        assert_eq!(t.leaves_at[0], Some(10_000 + 1_000 + MINUTE_MS));
        assert_eq!(t.amount[0], Amount(5));
        // Out of order (a restore): same totals.
        let mut v = Window::default();
        v.add(30_000, 2, Amount(5));
        v.add(10_000, 1, Amount(0));
        assert_eq!(v.totals(40_000), t);
    }

    #[test]
    fn totals_equal_a_count_of_every_call_still_in_each_window() {
        // Calls (and refunds) over two days, some out of order as a restore gives them, checked
        // against counting each call by hand: the day's running sums never drift.
        let mut w = Window::default();
        let mut calls: Vec<(i64, i64, Amount)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut now = 1_000_000_000;
        for _ in 0..3_000 {
            now += (next() % 120_000) as i64;
            let at = if next() % 10 == 0 {
                now - (next() % HOUR_MS as u64) as i64
            } else {
                now
            };
            let (n, amount) = if next() % 7 == 0 {
                (-1, Amount(-3))
            } else {
                (1, Amount(3))
            };
            w.add(at, n, amount);
            calls.push((at, n, amount));
            let t = w.totals(now);
            for (i, ((_, window), bucket)) in WINDOWS.iter().zip(BUCKETS).enumerate() {
                let counted = calls
                    .iter()
                    .filter(|(at, ..)| counts(at - at.rem_euclid(bucket), bucket, *window, now));
                let expected: i64 = counted.clone().map(|(_, n, _)| n).sum();
                let amount: i64 = counted.map(|(.., a)| a.0).sum();
                assert_eq!(
                    (t.calls[i], t.amount[i].0),
                    (expected, amount),
                    "window {i}"
                );
            }
        }
    }
}
