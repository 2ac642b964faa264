//! At-most-once requests on the phone (docs/pairing-protocol.md §5.2, "At most once"): what
//! the phone remembers of the bridge's last request of one pairing, so that a request the
//! bridge sends again (its session was lost before the answer arrived) is answered without
//! running the engine a second time.
//!
//! The bridge has one request open at a time and sends a new [`RequestId`] only once it is
//! done with the previous one, so the log keeps a single entry per pairing: a new id replaces
//! (and wipes) the old one. An entry lives [`REQUEST_LIFETIME`] from the start of its run or
//! from its answer, whichever is later; the bridge stops sending a request again before that
//! (counted from when it first had it, which is earlier).

use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::messages::RequestId;

/// How long a request may be sent again (bridge) and is remembered (phone).
pub const REQUEST_LIFETIME: Duration = Duration::from_secs(120);

/// What to do with a request that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// New: run it (and [`RequestLog::finish`] it).
    Run,
    /// Already running: wait for its answer ([`RequestLog::answer`]), do not run it again.
    Attach,
    /// Already answered: send this answer again.
    Answer(Zeroizing<Vec<u8>>),
}

enum State {
    Running,
    /// The answer can hold secrets (an encrypted PIN token, hmac-secret output): wiped when
    /// replaced, expired or dropped.
    Done(Zeroizing<Vec<u8>>),
}

struct Entry {
    id: RequestId,
    state: State,
    /// When the run started, or when it was answered.
    since: Instant,
}

/// The last request of one pairing.
#[derive(Default)]
pub struct RequestLog {
    last: Option<Entry>,
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("entry", &self.last.as_ref().map(|e| e.id))
            .finish_non_exhaustive()
    }
}

impl RequestLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// A request `id` arrived at `now`.
    pub fn begin(&mut self, id: RequestId, now: Instant) -> Delivery {
        self.expire(now);
        match &self.last {
            Some(Entry {
                id: last,
                state: State::Running,
                ..
            }) if *last == id => Delivery::Attach,
            Some(Entry {
                id: last,
                state: State::Done(answer),
                ..
            }) if *last == id => Delivery::Answer(answer.clone()),
            _ => {
                self.last = Some(Entry {
                    id,
                    state: State::Running,
                    since: now,
                });
                Delivery::Run
            }
        }
    }

    /// The run of `id` ended with `answer` (dropped if `id` is no longer the last request).
    pub fn finish(&mut self, id: RequestId, answer: Vec<u8>, now: Instant) {
        let answer = Zeroizing::new(answer);
        if let Some(entry) = self.last.as_mut().filter(|e| e.id == id) {
            entry.state = State::Done(answer);
            entry.since = now;
        }
    }

    /// The answer of `id`, once its run ended.
    pub fn answer(&self, id: RequestId) -> Option<Zeroizing<Vec<u8>>> {
        match &self.last {
            Some(Entry {
                id: last,
                state: State::Done(answer),
                ..
            }) if *last == id => Some(answer.clone()),
            _ => None,
        }
    }

    /// Whether `id` is the last request and still running.
    pub fn is_running(&self, id: RequestId) -> bool {
        matches!(&self.last, Some(e) if e.id == id && matches!(e.state, State::Running))
    }

    /// Forgets (and wipes) an entry older than [`REQUEST_LIFETIME`]; `Some(id)` if it was
    /// still running (the caller cancels that run).
    pub fn expire(&mut self, now: Instant) -> Option<RequestId> {
        let old = self
            .last
            .take_if(|e| now.saturating_duration_since(e.since) >= REQUEST_LIFETIME)?;
        matches!(old.state, State::Running).then_some(old.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_runs_once_and_a_repeat_gets_the_same_answer() {
        let t0 = Instant::now();
        let mut log = RequestLog::new();
        let a = RequestId([1; 16]);
        assert_eq!(log.begin(a, t0), Delivery::Run);
        // A repeat while it runs attaches to the run.
        assert_eq!(log.begin(a, t0), Delivery::Attach);
        assert!(log.is_running(a));
        assert_eq!(log.answer(a), None);
        log.finish(a, vec![0x00, 0xa0], t0);
        assert!(!log.is_running(a));
        assert_eq!(log.answer(a).as_deref(), Some(&vec![0x00, 0xa0]));
        assert_eq!(
            log.begin(a, t0 + Duration::from_secs(1)),
            Delivery::Answer(Zeroizing::new(vec![0x00, 0xa0]))
        );
    }

    #[test]
    fn a_new_id_replaces_the_last_and_a_late_answer_is_dropped() {
        let t0 = Instant::now();
        let mut log = RequestLog::new();
        let (a, b) = (RequestId([1; 16]), RequestId([2; 16]));
        assert_eq!(log.begin(a, t0), Delivery::Run);
        assert_eq!(log.begin(b, t0), Delivery::Run);
        // The run of `a` ends after `b` came: its answer is not kept.
        log.finish(a, vec![0x00], t0);
        assert_eq!(log.answer(a), None);
        assert!(log.is_running(b));
        log.finish(b, vec![0x01], t0);
        // `a` again (it cannot come from a bridge that follows the protocol) runs: nothing
        // of it is remembered any more.
        assert_eq!(log.begin(a, t0), Delivery::Run);
        assert_eq!(log.answer(b), None);
    }

    #[test]
    fn entries_expire_after_the_request_lifetime() {
        let t0 = Instant::now();
        let mut log = RequestLog::new();
        let a = RequestId([1; 16]);
        assert_eq!(log.begin(a, t0), Delivery::Run);
        // A run that outlives the lifetime is reported for cancelling.
        assert_eq!(
            log.expire(t0 + REQUEST_LIFETIME - Duration::from_secs(1)),
            None
        );
        assert_eq!(log.expire(t0 + REQUEST_LIFETIME), Some(a));
        assert_eq!(log.begin(a, t0 + REQUEST_LIFETIME), Delivery::Run);
        // An answer lives a lifetime from when it was given.
        let answered = t0 + REQUEST_LIFETIME + Duration::from_secs(30);
        log.finish(a, vec![0x00], answered);
        assert!(matches!(
            log.begin(a, answered + REQUEST_LIFETIME - Duration::from_secs(1)),
            Delivery::Answer(_)
        ));
        assert_eq!(log.expire(answered + REQUEST_LIFETIME), None);
        assert_eq!(log.answer(a), None);
    }
}
