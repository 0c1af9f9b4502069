//! Usage counted in this process: one server on SQLite. Keys live in shards, an agent's keys in
//! its agent's shard and a user's in its user's, so a decision locks at most two shards, always
//! agent before user (no deadlock), and decisions of other agents rarely wait on it.
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

// foldhash, not the standard SipHash: a decision hashes five to nine keys twice (its shard, its
// window), and SipHash was a twentieth of counting's cost. Its seeds are random per process, and
// only authenticated callers choose a key's strings (session ids, tool names).
use foldhash::fast::RandomState;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

use super::window::Window;
use super::{Amount, Charge, Clock, Key, Totals};

const SHARDS: usize = 64;
/// Every this many counts, a shard forgets keys idle for a day.
const SWEEP_EVERY: u32 = 4096;

#[derive(Default)]
pub(super) struct Shard {
    windows: HashMap<Key, Window, RandomState>,
    since_sweep: u32,
}

impl Shard {
    fn count(&mut self, key: &Key, calls: i64, amount: Amount, at: i64) {
        let amount = key.share(amount);
        // Look up before inserting: `entry` would clone the key's strings on every count.
        match self.windows.get_mut(key) {
            Some(window) => window.add(at, calls, amount),
            None => self
                .windows
                .entry(key.clone())
                .or_default()
                .add(at, calls, amount),
        }
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.windows.retain(|_, w| !w.idle(at));
        }
    }
}

pub(super) struct Local {
    pub(super) clock: Clock,
    hasher: RandomState,
    agents: Vec<Arc<Mutex<Shard>>>,
    users: Vec<Arc<Mutex<Shard>>>,
}

/// The shards a decision holds: its agent's, and its user's when it has one.
pub(super) struct Guards {
    agent: OwnedMutexGuard<Shard>,
    user: Option<OwnedMutexGuard<Shard>>,
}

impl Guards {
    fn shard(&mut self, key: &Key) -> &mut Shard {
        match (key.user(), &mut self.user) {
            (Some(_), Some(user)) => user,
            _ => &mut self.agent,
        }
    }

    pub(super) fn count(&mut self, keys: &[Key], calls: i64, amount: Amount, at: i64) {
        for key in keys {
            self.shard(key).count(key, calls, amount, at);
        }
    }
}

impl Local {
    pub(super) fn new(clock: Clock) -> Self {
        let shards = || (0..SHARDS).map(|_| Arc::default()).collect();
        Self {
            clock,
            hasher: Default::default(),
            agents: shards(),
            users: shards(),
        }
    }

    fn index(&self, of: impl Hash) -> usize {
        (self.hasher.hash_one(of) as usize) % SHARDS
    }

    async fn lock(&self, keys: &[Key]) -> Guards {
        let agent = keys.iter().find_map(|k| match k {
            Key::Agent(a) => Some(a.as_str()),
            _ => None,
        });
        let user = keys.iter().find_map(Key::user);
        let agent = self.agents[self.index(agent.unwrap_or_default())]
            .clone()
            .lock_owned()
            .await;
        let user = match user {
            Some(u) => Some(self.users[self.index(u)].clone().lock_owned().await),
            None => None,
        };
        Guards { agent, user }
    }

    /// The totals of `keys`, in their order, and the shards held.
    pub(super) async fn begin(&self, keys: &[Key]) -> (Vec<Totals>, i64, Guards) {
        let mut guards = self.lock(keys).await;
        // Read after the lock: the previous holder's count is in.
        let now = self.clock.now_ms();
        let totals = keys
            .iter()
            .map(|key| {
                guards
                    .shard(key)
                    .windows
                    .get_mut(key)
                    .map(|w| w.totals(now))
                    .unwrap_or_default()
            })
            .collect();
        (totals, now, guards)
    }

    pub(super) async fn count(&self, keys: &[Key], amount: Amount, at: i64) {
        self.lock(keys).await.count(keys, 1, amount, at);
    }

    pub(super) async fn refund(&self, charge: &Charge) {
        let keys = charge.call.keys();
        self.lock(&keys)
            .await
            .count(&keys, -1, Amount(-charge.call.amount().0), charge.at_ms);
    }
}
