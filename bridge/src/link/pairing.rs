//! First contact: pairing codes shown one after another until a phone pairs or time runs
//! out, the handshake on the offer's mailbox ([`FirstContact`] on `pocketkey_net`'s session
//! [`Driver`]), and the computer user's confirmation (here and when a newly paired phone would
//! replace the one served).

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use pocketkey_core::clock::unix_now;
use pocketkey_core::pairing::offer::OFFER_LIFETIME_SECS;
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::session::{Timeout, CONFIRMATION_TIMEOUT};
use pocketkey_core::pairing::{Event, PairingOffer, PairingRecord, Role, Session, UrlPolicy};
use pocketkey_net::driver::{Driver, Side, Step};
use pocketkey_net::mailbox::{MailboxConn, MailboxError};
use zeroize::Zeroizing;

use super::{describe_duration, hello, Link, Mode, CONNECT_TIMEOUT, RECONNECT_DELAY, STOP_CHECK};
use crate::confirm::Answer;

impl Link {
    /// A phone was just paired. It is served at once unless another phone was served: then
    /// only if the user says so (a stranger who paired must not take over silently).
    pub(super) fn serve_new(&mut self, new: PairingRecord, before: Option<PairingRecord>) -> Mode {
        let Some(old) = before else {
            return self.serve_mode(new);
        };
        self.confirmer.ask(
            &format!(
                "Paired with {:?}. This computer serves {:?}.",
                new.name, old.name
            ),
            &format!("Serve {:?} from now on instead?", new.name),
        );
        match self.wait_for_answer(CONFIRMATION_TIMEOUT) {
            Answer::Yes => self.serve_mode(new),
            Answer::No => {
                eprintln!(
                    "still serving {:?}; {:?} stays paired (to serve it, start with --phone {:?})",
                    old.name, new.name, new.name
                );
                self.serve_mode(old)
            }
        }
    }

    /// Waits (taking requests meanwhile) for the answer to the open question; no within
    /// `within`, or when the bridge stops, counts as no.
    fn wait_for_answer(&mut self, within: Duration) -> Answer {
        let until = Instant::now() + within;
        loop {
            if let Some(answer) = self.confirmer.answer() {
                return answer;
            }
            let now = Instant::now();
            if self.stop.load(Ordering::SeqCst) || now >= until {
                self.confirmer.withdraw();
                return Answer::No;
            }
            self.take_requests(now);
            self.wait(Some(until));
        }
    }

    /// Shows pairing codes, a new one after each failed or expired one, for `window` in all
    /// (issue: a bridge left unpaired must not offer for ever). Some(record) once paired;
    /// None when stopped or out of time.
    pub(super) fn pair_within(&mut self, window: Duration) -> Option<PairingRecord> {
        let until = Instant::now() + window;
        while !self.stop.load(Ordering::SeqCst) && Instant::now() < until {
            if let Some(record) = self.pair(until) {
                return Some(record);
            }
        }
        None
    }

    /// Shows a new offer and waits for a phone, until the offer expires or `until`.
    /// Some(record) once paired.
    fn pair(&mut self, until: Instant) -> Option<PairingRecord> {
        let Some(relay_url) = self.config.relay_url.clone() else {
            self.fail("no phone is paired: give --relay URL to pair one".into());
            return None;
        };
        let offer = match PairingOffer::generate(
            &relay_url,
            &self.config.name,
            UrlPolicy::Strict,
            unix_now(),
        ) {
            Ok(o) => o,
            Err(e) => {
                self.fail(format!("cannot make a pairing code: {e}"));
                return None;
            }
        };
        let url = Zeroizing::new(offer.url().to_url_string());
        let expires = until.min(Instant::now() + Duration::from_secs(OFFER_LIFETIME_SECS));
        crate::show_pairing_url(
            &url,
            &crate::ShowCode {
                print_url: self.config.print_url,
                png: self.config.qr_png.as_deref(),
            },
            expires.saturating_duration_since(Instant::now()),
        );
        drop(url);
        let attach = offer.mailbox().attach(Role::Bridge);
        let session = match Session::bridge_first_contact(offer, hello(&self.config.name)) {
            Ok(s) => s,
            Err(e) => {
                self.fail(format!("cannot start pairing: {e}"));
                return None;
            }
        };
        let mut conn = loop {
            if self.stop.load(Ordering::SeqCst) || Instant::now() >= expires {
                return None;
            }
            match MailboxConn::open_with(
                &relay_url,
                &attach,
                CONNECT_TIMEOUT,
                Arc::clone(&self.wakeup),
            ) {
                Ok(c) => break c,
                Err(e) => {
                    eprintln!("relay: {e}; retrying");
                    self.idle(RECONNECT_DELAY);
                }
            }
        };
        let stop = Arc::clone(&self.stop);
        let wakeup = Arc::clone(&self.wakeup);
        let driver = Driver {
            wakeup: &wakeup,
            stop: &stop,
            stop_check: STOP_CHECK,
        };
        let mut side = FirstContact {
            link: self,
            session,
            expires,
            paired: None,
        };
        // A relay error was reported by `lost`: a new code is shown.
        let result = driver.run(&mut conn, &mut side).unwrap_or(None);
        conn.close();
        result
    }
}

/// The bridge's event handling on the [`Driver`] while a pairing code is shown: the
/// first-contact session on the offer's mailbox and the computer user's confirmation.
struct FirstContact<'a> {
    link: &'a mut Link,
    session: Session,
    /// When the offer ends, unless a phone started its handshake in time.
    expires: Instant,
    /// Stored in this turn: announced once its last handshake frames left.
    paired: Option<PairingRecord>,
}

impl FirstContact<'_> {
    /// The session's events, and the user's answer once the code is shown; the new pairing
    /// once established.
    fn events(&mut self) -> Option<PairingRecord> {
        let (session, link) = (&mut self.session, &mut *self.link);
        let mut record = None;
        // Twice: an answer given at once (`--auto-confirm`) releases `Established`.
        for _ in 0..2 {
            while let Some(event) = session.poll_event() {
                match event {
                    Event::ConfirmationNeeded { phone_name, code } => link.confirmer.ask(
                        &format!("Phone {phone_name:?} wants to pair. Code on the phone: {code}"),
                        "Pair?",
                    ),
                    Event::Established(e) => {
                        if let Some(new) = e.new_pairing {
                            record = Some(PairingRecord::from_new(new, unix_now()));
                        }
                    }
                    Event::TimedOut(Timeout::Confirmation) => {
                        link.confirmer.withdraw();
                        eprintln!(
                            "no answer within {}: pairing refused",
                            describe_duration(CONFIRMATION_TIMEOUT)
                        );
                    }
                    _ => {}
                }
            }
            if !session.awaits_confirmation() {
                break;
            }
            match link.confirmer.answer() {
                // Both fail only when no confirmation is awaited, checked just above.
                Some(Answer::Yes) => {
                    let _ = session.confirm();
                }
                Some(Answer::No) => {
                    let _ = session.refuse();
                    eprintln!("pairing refused: nothing stored");
                }
                None => break,
            }
        }
        record
    }
}

impl Side<MailboxConn> for FirstContact<'_> {
    /// `Some` once paired; `None` when stopped, out of time, or the offer is burned.
    type Outcome = Option<PairingRecord>;

    fn sessions(&mut self) -> Vec<&mut Session> {
        vec![&mut self.session]
    }

    fn before_read(&mut self, now: Instant) {
        self.link.take_requests(now);
    }

    fn lost(&mut self, error: &MailboxError) {
        eprintln!("relay: {error}");
    }

    fn turn(
        &mut self,
        frame: Option<RelayFrame>,
        now: Instant,
        _conn: &mut MailboxConn,
    ) -> Result<Step<Self::Outcome>, MailboxError> {
        // A phone that started its handshake in time may finish it (and be confirmed) after
        // the offer's end: the offer was burned on its first message.
        let started = self.session.poll_timeout().is_some();
        if now >= self.expires && !started {
            return Ok(Step::End(None));
        }
        if let Some(RelayFrame::Data(payload)) = frame {
            if let Err(e) = self.session.receive(&payload, now) {
                eprintln!("pairing failed: {e}");
            }
        }
        if self.session.poll_timeout().is_some_and(|t| now >= t) {
            self.session.handle_timeout(now);
        }
        let record = self.events();
        // Stored before the last handshake frames leave: once the phone has them it calls
        // itself paired, so the pairing must exist here first (or not at all).
        if let Some(record) = &record {
            if let Err(e) = self.link.store.insert(record) {
                eprintln!("cannot store the pairing: {e}");
                return Ok(Step::End(None));
            }
        }
        self.paired = record;
        Ok(Step::Continue)
    }

    fn send_failed(&mut self, _error: MailboxError) -> Result<(), MailboxError> {
        // A relay that cannot take a frame fails the next read: a new code is shown.
        Ok(())
    }

    fn after_flush(
        &mut self,
        _now: Instant,
        _conn: &mut MailboxConn,
    ) -> Result<Step<Self::Outcome>, MailboxError> {
        if let Some(record) = self.paired.take() {
            *self
                .link
                .get_info
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = record.peer_get_info.clone();
            eprintln!("paired with {:?}", record.name);
            // Only the test harness reads it; a closed stdout must not stop the bridge.
            let _ = std::io::stdout().flush();
            return Ok(Step::End(Some(record)));
        }
        if self.session.is_finished() {
            // The offer is burned (first HS1 read); show a new one.
            self.link.confirmer.withdraw();
            return Ok(Step::End(None));
        }
        Ok(Step::Continue)
    }

    fn deadline(&self, _now: Instant) -> Option<Instant> {
        let offer_end = self
            .session
            .poll_timeout()
            .is_none()
            .then_some(self.expires);
        [offer_end, self.link.waiting_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    fn stopping(&mut self) {}

    fn stopped(&mut self, _conn: &mut MailboxConn) -> Self::Outcome {
        None
    }
}
