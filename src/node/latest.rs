//! A one-slot mailbox between the subscription and the inference worker. Putting a cloud
//! replaces any cloud still waiting (counted as skipped), so the worker always takes the
//! newest and a slow model never builds a backlog.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    skipped: u64,
    closed: bool,
}

/// The newest value not yet taken.
#[derive(Debug)]
pub struct Latest<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest {
            slot: Mutex::new(Slot {
                value: None,
                skipped: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Latest<T> {
    /// Stores `value`, replacing (and counting) one not yet taken.
    pub fn put(&self, value: T) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.value.replace(value).is_some() {
            slot.skipped += 1;
        }
        drop(slot);
        self.ready.notify_one();
    }

    /// Waits up to `timeout` for a value. `None` on timeout or once closed.
    pub fn take(&self, timeout: Duration) -> Option<T> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.value.is_none() && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        slot.value.take()
    }

    /// Values replaced before being taken, since the start.
    pub fn skipped(&self) -> u64 {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).skipped
    }

    /// Wakes the taker for good (shutdown).
    pub fn close(&self) {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_burst_leaves_only_the_newest() {
        let latest = Latest::default();
        for i in 0..50 {
            latest.put(i);
        }
        assert_eq!(latest.take(Duration::ZERO), Some(49));
        assert_eq!(latest.skipped(), 49);
        assert_eq!(latest.take(Duration::from_millis(1)), None);
    }

    #[test]
    fn a_waiting_worker_wakes_on_put_and_on_close() {
        let latest = Arc::new(Latest::default());
        let l = latest.clone();
        let worker = std::thread::spawn(move || l.take(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        latest.put("cloud");
        assert_eq!(worker.join().unwrap(), Some("cloud"));
        let l = latest.clone();
        let worker = std::thread::spawn(move || l.take(Duration::from_secs(10)));
        latest.close();
        assert_eq!(worker.join().unwrap(), None::<&str>);
        assert!(latest.is_closed());
    }
}
