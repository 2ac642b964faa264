//! First contact: pairing codes shown one after another until a phone pairs or time runs
//! out, the handshake on the offer's mailbox, and the computer user's confirmation (here and
//! when a newly paired phone would replace the one served).

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use pocketkey_core::clock::unix_now;
use pocketkey_core::pairing::offer::OFFER_LIFETIME_SECS;
use pocketkey_core::pairing::relay::RelayFrame;
use pocketkey_core::pairing::session::{Timeout, CONFIRMATION_TIMEOUT};
use pocketkey_core::pairing::{Event, PairingOffer, PairingRecord, Role, Session, UrlPolicy};
use pocketkey_net::mailbox::MailboxConn;
use zeroize::Zeroizing;

use super::{describe_duration, hello, Link, Mode, CONNECT_TIMEOUT, RECONNECT_DELAY};
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
        let mut session = match Session::bridge_first_contact(offer, hello(&self.config.name)) {
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
        let result = loop {
            let now = Instant::now();
            // A phone that started its handshake in time may finish it (and be confirmed)
            // after the offer's end: the offer was burned on its first message.
            let started = session.poll_timeout().is_some();
            if self.stop.load(Ordering::SeqCst) || (now >= expires && !started) {
                break None;
            }
            self.take_requests(now);
            let frame = match conn.try_next() {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("relay: {e}");
                    break None;
                }
            };
            let got_frame = frame.is_some();
            if let Some(RelayFrame::Data(payload)) = frame {
                if let Err(e) = session.receive(&payload, now) {
                    eprintln!("pairing failed: {e}");
                }
            }
            if session.poll_timeout().is_some_and(|t| now >= t) {
                session.handle_timeout(now);
            }
            let mut record = None;
            // Twice: an answer given at once (`--auto-confirm`) releases `Established`.
            for _ in 0..2 {
                while let Some(event) = session.poll_event() {
                    match event {
                        Event::ConfirmationNeeded { phone_name, code } => self.confirmer.ask(
                            &format!(
                                "Phone {phone_name:?} wants to pair. Code on the phone: {code}"
                            ),
                            "Pair?",
                        ),
                        Event::Established(e) => {
                            if let Some(new) = e.new_pairing {
                                record = Some(PairingRecord::from_new(new, unix_now()));
                            }
                        }
                        Event::TimedOut(Timeout::Confirmation) => {
                            self.confirmer.withdraw();
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
                match self.confirmer.answer() {
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
            // Stored before the last handshake frames leave: once the phone has them it calls
            // itself paired, so the pairing must exist here first (or not at all).
            if let Some(record) = &record {
                if let Err(e) = self.store.insert(record) {
                    eprintln!("cannot store the pairing: {e}");
                    break None;
                }
            }
            while let Some(frame) = session.poll_frame() {
                // A relay that cannot take it fails the next read: a new code is shown.
                let _ = conn.send(&RelayFrame::Data(frame));
            }
            if let Some(record) = record {
                *self.get_info.lock().unwrap_or_else(PoisonError::into_inner) =
                    record.peer_get_info.clone();
                eprintln!("paired with {:?}", record.name);
                // Only the test harness reads it; a closed stdout must not stop the bridge.
                let _ = std::io::stdout().flush();
                break Some(record);
            }
            if session.is_finished() {
                // The offer is burned (first HS1 read); show a new one.
                self.confirmer.withdraw();
                break None;
            }
            if !got_frame {
                let until = session.poll_timeout().unwrap_or(expires);
                self.wait(Some(until));
            }
        };
        conn.close();
        result
    }
}
