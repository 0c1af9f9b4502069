//! What the write path of a single server's ledger is doing: which of its steps (a commit, an
//! fsync, the WAL copies) is running, and how much time each has spent. A slow answer is logged
//! with each step's time meanwhile (`api::slow`), so a stall in the tail is attributed to a step,
//! not guessed at; a wait the steps do not account for was spent elsewhere (a queue, the
//! scheduler). `scripts/bench.sh`'s soak mode reads these lines.
//!
//! Lock-free: the sequencer and the syncer write a few atomics per step, and nothing on the
//! write path ever waits for a reader.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One step of the write path.
#[derive(Debug, Default)]
pub struct Step {
    /// When the running pass started (µs since [`Activity`]'s origin, plus one); 0 when idle.
    running_since: AtomicU64,
    /// Time spent in finished passes (µs), ever: a wait's share is the difference.
    spent: AtomicU64,
}

/// The steps of a single server's write path, by name.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    /// The sequencer's transaction for one batch.
    pub commit: Step,
    /// The syncer's fsync of the WAL.
    pub sync: Step,
    /// The sequencer copying the WAL's last frames and starting it over, between two commits.
    pub wal_restart: Step,
    /// A passive copy of the WAL into the database, from outside the writer.
    pub wal_copy: Step,
    /// Entries in the last batch committed.
    pub last_batch: AtomicU64,
}

/// Where a wait started: the clock, and what each step had spent by then.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    at: u64,
    spent: [u64; 4],
}

/// A step's share of one wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub step: &'static str,
    /// Time in its passes that ended during the wait (whole passes, so one that began before the
    /// wait counts in full), plus the running pass's time within the wait.
    pub took: Duration,
    /// Whether a pass was still running at the end of the wait.
    pub running: bool,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            commit: Step::default(),
            sync: Step::default(),
            wal_restart: Step::default(),
            wal_copy: Step::default(),
            last_batch: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn steps(&self) -> [(&'static str, &Step); 4] {
        [
            ("commit", &self.commit),
            ("sync", &self.sync),
            ("wal_restart", &self.wal_restart),
            ("wal_copy", &self.wal_copy),
        ]
    }

    /// Runs `work` as a pass of `step`.
    pub fn time<T>(&self, step: &Step, work: impl FnOnce() -> T) -> T {
        let start = self.start(step);
        let out = work();
        self.finish(step, start);
        out
    }

    /// Marks `step` running; give what this returns to [`Activity::finish`] (for a pass that
    /// awaits).
    pub fn start(&self, step: &Step) -> u64 {
        let start = self.now();
        step.running_since.store(start + 1, Ordering::Release);
        start
    }

    pub fn finish(&self, step: &Step, start: u64) {
        let took = self.now().saturating_sub(start);
        step.spent.fetch_add(took, Ordering::AcqRel);
        step.running_since.store(0, Ordering::Release);
    }

    /// Entries in the last batch committed.
    pub fn last_batch(&self) -> u64 {
        self.last_batch.load(Ordering::Relaxed)
    }

    /// The start of a wait, for [`Activity::during`].
    pub fn mark(&self) -> Mark {
        Mark {
            at: self.now(),
            spent: self.steps().map(|(_, s)| s.spent.load(Ordering::Acquire)),
        }
    }

    /// Each step's share of the wait since `mark`, for the steps that ran during it.
    pub fn during(&self, mark: &Mark) -> Vec<Seen> {
        let now = self.now();
        let mut seen = Vec::new();
        for ((name, step), before) in self.steps().into_iter().zip(mark.spent) {
            let finished = step.spent.load(Ordering::Acquire).saturating_sub(before);
            let running = step.running_since.load(Ordering::Acquire);
            let current = match running {
                0 => 0,
                since => now.saturating_sub((since - 1).max(mark.at)),
            };
            if finished + current > 0 || running != 0 {
                seen.push(Seen {
                    step: name,
                    took: Duration::from_micros(finished + current),
                    running: running != 0,
                });
            }
        }
        seen
    }

    /// The step with the largest share of the wait since `mark`, as `step 12.3 ms` (`running`
    /// when not done): the likeliest cause of the wait, for a log line.
    pub fn longest_during(&self, mark: &Mark) -> String {
        match self.during(mark).into_iter().max_by_key(|s| s.took) {
            None => "none".into(),
            Some(s) => s.to_string(),
        }
    }

    /// Every step's share of the wait since `mark`, as `commit 0.6 ms, sync 0.1 ms`, for a log
    /// line; `none` when no step ran.
    pub fn describe_during(&self, mark: &Mark) -> String {
        let seen = self.during(mark);
        if seen.is_empty() {
            return "none".into();
        }
        seen.iter()
            .map(Seen::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:.1} ms{}",
            self.step,
            self.took.as_secs_f64() * 1e3,
            if self.running { " (running)" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_sees_the_time_each_step_spent_during_it() {
        let a = Activity::default();
        a.time(&a.commit, || std::thread::sleep(Duration::from_millis(2)));
        let mark = a.mark();
        assert!(
            a.during(&mark).is_empty(),
            "the commit ended before the wait"
        );
        // Two passes of one step during the wait add up.
        a.time(&a.sync, || std::thread::sleep(Duration::from_millis(5)));
        a.time(&a.sync, || std::thread::sleep(Duration::from_millis(5)));
        let seen = a.during(&mark);
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].step, seen[0].running), ("sync", false));
        assert!(seen[0].took >= Duration::from_millis(10), "{seen:?}");
        // A step still running shows with its time within the wait so far.
        a.time(&a.wal_restart, || {
            std::thread::sleep(Duration::from_millis(3));
            let now = a.during(&mark);
            let restart = now.iter().find(|s| s.step == "wal_restart");
            assert!(restart.is_some_and(|s| s.running && s.took >= Duration::from_millis(3)));
        });
        assert!(
            a.longest_during(&mark).starts_with("sync "),
            "{}",
            a.longest_during(&mark)
        );
    }
}
