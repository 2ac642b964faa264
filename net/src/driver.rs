//! The one loop that runs pairing sessions over an attached mailbox, for both ends: the
//! phone's ([`crate::pairing`]) and the bridge's. Like rustls' `complete_io` for a sans-IO TLS
//! connection, the driver owns the I/O — reading the relay, flushing the sessions' frames, the
//! stop flag, sleeping until the next frame or deadline — and the sans-IO
//! `pocketkey_core::pairing::Session` stays as it is. Each end implements [`Side`] with only its
//! own event handling.
//!
//! One turn:
//!
//! ```text
//! stop raised?  → Side::stopping (a Bye) → flush (errors ignored) → Side::stopped → Ok(outcome)
//! Side::before_read(now)                  work that needs no relay (a transport's requests)
//! relay.try_next()                        Err → Side::lost → Err (the owner reconnects)
//! Side::turn(frame, now, relay)           frames, timers, events; Done ends here, unflushed
//! flush Side::sessions() in order         a failed send goes to Side::send_failed
//! Side::after_flush(now, relay)           finished sessions, store writes; Done ends here
//! no frame came → sleep until woken, a session's or the side's deadline, or the stop check
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::Session;

use crate::mailbox::{MailboxConn, MailboxError, Wakeup};

/// The relay as the driver uses it: [`MailboxConn`], or a test's stand-in.
pub trait Relay {
    /// The next frame if one is queued; never blocks.
    fn try_next(&mut self) -> Result<Option<RelayFrame>, MailboxError>;
    fn send(&mut self, frame: &RelayFrame) -> Result<(), MailboxError>;
}

impl Relay for MailboxConn {
    fn try_next(&mut self) -> Result<Option<RelayFrame>, MailboxError> {
        MailboxConn::try_next(self)
    }
    fn send(&mut self, frame: &RelayFrame) -> Result<(), MailboxError> {
        MailboxConn::send(self, frame)
    }
}

/// How one attachment of a pairing mailbox ended without a relay error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The stop flag was raised (the owner closes the connection).
    Stopped,
    /// The pairing was revoked in an established session (authenticated by the pairing's
    /// keys): the record goes.
    Revoked,
}

/// Whether the loop goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<T> {
    Continue,
    End(T),
}

/// One end's event handling.
pub trait Side<R: Relay> {
    /// How the loop ends without a relay error ([`Ended`] for a served pairing).
    type Outcome;
    /// The sessions whose frames leave after each turn, in this order.
    fn sessions(&mut self) -> Vec<&mut Session>;
    /// Before the relay is read: work that does not need it.
    fn before_read(&mut self, _now: Instant) {}
    /// Reading the relay failed: the connection is over.
    fn lost(&mut self, _error: &MailboxError) {}
    /// The frame read (if any), the sessions' timers and events. Frames the side sends itself
    /// (a wake-up, a push registration) go straight to `relay`. `End` returns at once, without
    /// flushing.
    fn turn(
        &mut self,
        frame: Option<RelayFrame>,
        now: Instant,
        relay: &mut R,
    ) -> Result<Step<Self::Outcome>, MailboxError>;
    /// A session frame could not be sent: `Err` ends the connection, `Ok` leaves it to the
    /// next read to notice.
    fn send_failed(&mut self, error: MailboxError) -> Result<(), MailboxError>;
    /// After the sessions' frames left: what must wait for them (dropping a finished session,
    /// store writes, timers of the side's own).
    fn after_flush(
        &mut self,
        now: Instant,
        relay: &mut R,
    ) -> Result<Step<Self::Outcome>, MailboxError>;
    /// The side's own next deadline besides the sessions' (a request's, a timer's).
    fn deadline(&self, now: Instant) -> Option<Instant>;
    /// The stop flag was raised: last words (a `Bye`), flushed next.
    fn stopping(&mut self);
    /// After the last words left (or failed to): the outcome of a stop.
    fn stopped(&mut self, relay: &mut R) -> Self::Outcome;
}

/// The loop's settings.
pub struct Driver<'a> {
    /// Raised by the connection's reader and by the side's other sources.
    pub wakeup: &'a Wakeup,
    /// Looked at every turn; it cannot wake the loop, hence `stop_check`.
    pub stop: &'a AtomicBool,
    /// The longest sleep: how soon a raised `stop` is seen.
    pub stop_check: Duration,
}

impl Driver<'_> {
    /// Runs `side` on `relay` until it ends, the relay fails or `stop` is raised.
    pub fn run<R: Relay, S: Side<R>>(
        &self,
        relay: &mut R,
        side: &mut S,
    ) -> Result<S::Outcome, MailboxError> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                side.stopping();
                for frame in outgoing(side) {
                    // Stopping either way: a relay that cannot take the Bye changes nothing.
                    if relay.send(&RelayFrame::Data(frame)).is_err() {
                        break;
                    }
                }
                return Ok(side.stopped(relay));
            }
            let now = Instant::now();
            side.before_read(now);
            let frame = match relay.try_next() {
                Ok(frame) => frame,
                Err(e) => {
                    side.lost(&e);
                    return Err(e);
                }
            };
            let got_frame = frame.is_some();
            if let Step::End(ended) = side.turn(frame, now, relay)? {
                return Ok(ended);
            }
            for frame in outgoing(side) {
                if let Err(e) = relay.send(&RelayFrame::Data(frame)) {
                    side.send_failed(e)?;
                }
            }
            if let Step::End(ended) = side.after_flush(now, relay)? {
                return Ok(ended);
            }
            if !got_frame {
                // Nothing queued: sleep until a frame, the side's wake-up, a deadline or the
                // stop check.
                let now = Instant::now();
                let mut wait = self.stop_check;
                let deadlines = side
                    .sessions()
                    .iter()
                    .filter_map(|s| s.poll_timeout())
                    .collect::<Vec<_>>();
                for t in deadlines.into_iter().chain(side.deadline(now)) {
                    wait = wait.min(t.saturating_duration_since(now));
                }
                self.wakeup.wait(wait);
            }
        }
    }
}

/// Every frame the sessions have to send, in the order of [`Side::sessions`].
fn outgoing<R: Relay, S: Side<R>>(side: &mut S) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for session in side.sessions() {
        while let Some(frame) = session.poll_frame() {
            frames.push(frame);
        }
    }
    frames
}

/// Sends `session`'s frames now, in the middle of a turn, when a frame the side sends itself
/// must follow them (a `Revoke` before the DELETE).
pub fn flush_now<R: Relay>(session: &mut Session, relay: &mut R) -> Result<(), MailboxError> {
    while let Some(frame) = session.poll_frame() {
        relay.send(&RelayFrame::Data(frame))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use super::*;

    /// A relay stand-in: frames to hand out, frames sent, sends that fail.
    #[derive(Default)]
    struct Script {
        incoming: VecDeque<Result<Option<RelayFrame>, MailboxError>>,
        sent: Vec<RelayFrame>,
        refuse_sends: bool,
    }

    impl Relay for Script {
        fn try_next(&mut self) -> Result<Option<RelayFrame>, MailboxError> {
            self.incoming.pop_front().unwrap_or(Ok(None))
        }
        fn send(&mut self, frame: &RelayFrame) -> Result<(), MailboxError> {
            if self.refuse_sends {
                return Err(MailboxError::Closed(1006));
            }
            self.sent.push(frame.clone());
            Ok(())
        }
    }

    /// Records what the driver asked of it.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<&'static str>,
        end_in_turn: Option<Ended>,
        end_after_flush: Option<Ended>,
        keep_going_after_send_failure: bool,
        stop_after_turns: Option<(usize, Arc<AtomicBool>)>,
        turns: usize,
    }

    impl Side<Script> for Recorder {
        type Outcome = Ended;
        fn sessions(&mut self) -> Vec<&mut Session> {
            Vec::new()
        }
        fn before_read(&mut self, _: Instant) {
            self.calls.push("before_read");
        }
        fn lost(&mut self, _: &MailboxError) {
            self.calls.push("lost");
        }
        fn turn(
            &mut self,
            frame: Option<RelayFrame>,
            _: Instant,
            relay: &mut Script,
        ) -> Result<Step<Ended>, MailboxError> {
            self.calls
                .push(if frame.is_some() { "frame" } else { "turn" });
            self.turns += 1;
            assert!(self.turns < 1000, "the driver went on after the side ended");
            if let Some((n, stop)) = &self.stop_after_turns {
                if self.turns >= *n {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            relay.send(&RelayFrame::Wake).ok();
            Ok(self.end_in_turn.map_or(Step::Continue, Step::End))
        }
        fn send_failed(&mut self, e: MailboxError) -> Result<(), MailboxError> {
            self.calls.push("send_failed");
            if self.keep_going_after_send_failure {
                Ok(())
            } else {
                Err(e)
            }
        }
        fn after_flush(&mut self, _: Instant, _: &mut Script) -> Result<Step<Ended>, MailboxError> {
            self.calls.push("after_flush");
            Ok(self.end_after_flush.map_or(Step::Continue, Step::End))
        }
        fn deadline(&self, now: Instant) -> Option<Instant> {
            Some(now)
        }
        fn stopping(&mut self) {
            self.calls.push("stopping");
        }
        fn stopped(&mut self, _: &mut Script) -> Ended {
            self.calls.push("stopped");
            Ended::Stopped
        }
    }

    fn driver<'a>(wakeup: &'a Wakeup, stop: &'a AtomicBool) -> Driver<'a> {
        Driver {
            wakeup,
            stop,
            stop_check: Duration::from_millis(1),
        }
    }

    #[test]
    fn stop_says_goodbye_flushes_and_ends_stopped() {
        let (wakeup, stop) = (Wakeup::new(), Arc::new(AtomicBool::new(false)));
        let mut side = Recorder {
            stop_after_turns: Some((2, Arc::clone(&stop))),
            ..Recorder::default()
        };
        let mut relay = Script::default();
        let ended = driver(&wakeup, &stop).run(&mut relay, &mut side);
        assert_eq!(ended, Ok(Ended::Stopped));
        assert_eq!(
            side.calls,
            [
                "before_read",
                "turn",
                "after_flush",
                "before_read",
                "turn",
                "after_flush",
                "stopping",
                "stopped"
            ]
        );
        assert_eq!(relay.sent, [RelayFrame::Wake, RelayFrame::Wake]);
    }

    #[test]
    fn a_read_error_is_lost_and_returned() {
        let (wakeup, stop) = (Wakeup::new(), AtomicBool::new(false));
        let mut side = Recorder::default();
        let mut relay = Script::default();
        relay.incoming.push_back(Ok(Some(RelayFrame::Wake)));
        relay.incoming.push_back(Err(MailboxError::Closed(4010)));
        let ended = driver(&wakeup, &stop).run(&mut relay, &mut side);
        assert_eq!(ended, Err(MailboxError::Closed(4010)));
        assert_eq!(
            side.calls,
            ["before_read", "frame", "after_flush", "before_read", "lost"]
        );
    }

    #[test]
    fn an_end_in_the_turn_skips_the_flush() {
        let (wakeup, stop) = (Wakeup::new(), AtomicBool::new(false));
        let mut side = Recorder {
            end_in_turn: Some(Ended::Revoked),
            ..Recorder::default()
        };
        let ended = driver(&wakeup, &stop).run(&mut Script::default(), &mut side);
        assert_eq!(ended, Ok(Ended::Revoked));
        assert_eq!(side.calls, ["before_read", "turn"]);
    }

    #[test]
    fn an_end_after_the_flush_is_returned() {
        let (wakeup, stop) = (Wakeup::new(), AtomicBool::new(false));
        let mut side = Recorder {
            end_after_flush: Some(Ended::Revoked),
            ..Recorder::default()
        };
        let ended = driver(&wakeup, &stop).run(&mut Script::default(), &mut side);
        assert_eq!(ended, Ok(Ended::Revoked));
        assert_eq!(side.calls, ["before_read", "turn", "after_flush"]);
    }
}
