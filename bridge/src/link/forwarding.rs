//! The engine the CTAPHID transport runs while the phone holds the keys: getInfo from the
//! cached copy, every other request handed to the link thread, which forwards it to the phone
//! and hands back the phone's status updates and answer. The transport's worker blocks in
//! [`ForwardingEngine`] meanwhile, looking at the browser's cancel.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pocketkey_core::pairing::{CtapKind, PendingStatus};
use pocketkey_net::mailbox::{trace, Wakeup};

use crate::engine::{Engine, RequestContext, WaitingForUser};

/// CTAP2_ERR_USER_ACTION_TIMEOUT: the phone did not answer in time.
pub const CBOR_TIMEOUT: u8 = 0x2f;
/// CTAP2_ERR_KEEPALIVE_CANCEL: cancelled before the phone had the request.
pub const CBOR_CANCELLED: u8 = 0x2d;
/// SW_CONDITIONS_NOT_SATISFIED for U2F.
pub const SW_TIMEOUT: [u8; 2] = [0x69, 0x85];

/// How often a request waiting for the phone looks at the browser's cancel (a flag).
const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// The answer the browser gets when the phone did not answer in time (or the link is gone).
pub(crate) fn timeout_answer(kind: CtapKind) -> Vec<u8> {
    match kind {
        CtapKind::Cbor => vec![CBOR_TIMEOUT],
        CtapKind::Msg => SW_TIMEOUT.to_vec(),
    }
}

/// From the transport worker to the link thread.
pub enum ToLink {
    Request {
        kind: CtapKind,
        payload: Vec<u8>,
        reply: Sender<Reply>,
    },
    Cancel,
}

/// From the link thread back to the waiting request.
pub enum Reply {
    Pending(PendingStatus),
    Done(Vec<u8>),
}

/// The engine the CTAPHID transport runs: getInfo from the cache, everything else to the phone.
pub struct ForwardingEngine {
    pub to_link: Sender<ToLink>,
    pub get_info: Arc<Mutex<Option<Vec<u8>>>>,
    pub waiting: WaitingForUser,
}

impl ForwardingEngine {
    fn forward(&self, kind: CtapKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        trace("bridge.request");
        let (reply, answers) = mpsc::channel();
        if self
            .to_link
            .send(ToLink::Request {
                kind,
                payload: payload.to_vec(),
                reply,
            })
            .is_err()
        {
            return timeout_answer(kind);
        }
        let mut cancel_sent = false;
        let answer = loop {
            // Answers arrive at once; the timeout only paces the look at the cancel flag.
            match answers.recv_timeout(CANCEL_CHECK) {
                Ok(Reply::Pending(status)) => self
                    .waiting
                    .set(status == PendingStatus::UserPresenceNeeded),
                Ok(Reply::Done(answer)) => {
                    trace("bridge.reply");
                    break answer;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !cancel_sent && cx.cancel.is_cancelled() {
                        cancel_sent = true;
                        // A link that is gone drops `reply` too: the next receive sees it.
                        let _ = self.to_link.send(ToLink::Cancel);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break timeout_answer(kind),
            }
        };
        self.waiting.set(false);
        answer
    }
}

impl Engine for ForwardingEngine {
    fn process_cbor(&mut self, request: &[u8], cx: &RequestContext) -> Vec<u8> {
        if request.first() == Some(&0x04) {
            return match &*self.get_info.lock().unwrap_or_else(PoisonError::into_inner) {
                Some(info) => [&[0x00][..], info].concat(),
                None => vec![0x7f], // no phone paired yet: CTAP1_ERR_OTHER
            };
        }
        self.forward(CtapKind::Cbor, request, cx)
    }
    fn process_u2f(&mut self, apdu: &[u8], cx: &RequestContext) -> Vec<u8> {
        self.forward(CtapKind::Msg, apdu, cx)
    }
    fn power_cycle(&mut self) {}
}

/// The forwarding thread: hands the transport's messages to the link and wakes it; once the
/// transport is gone (the bridge stops), wakes it a last time so that it sees the stop flag.
pub(super) fn forward_requests(
    transport: &Receiver<ToLink>,
    to_link: &Sender<ToLink>,
    wakeup: &Wakeup,
) {
    loop {
        match transport.recv() {
            Ok(message) => {
                if to_link.send(message).is_err() {
                    return;
                }
                wakeup.wake();
            }
            Err(_) => {
                wakeup.wake();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use pocketkey_core::cancel::CancelToken;

    use super::*;

    fn engine(cached: Option<Vec<u8>>) -> (ForwardingEngine, Receiver<ToLink>) {
        let (to_link, requests) = mpsc::channel();
        let engine = ForwardingEngine {
            to_link,
            get_info: Arc::new(Mutex::new(cached)),
            waiting: WaitingForUser::default(),
        };
        (engine, requests)
    }

    #[test]
    fn get_info_comes_from_the_cache_or_is_an_error_before_any_pairing() {
        let (mut paired, requests) = engine(Some(vec![0xa1, 0x01, 0x02]));
        let cx = RequestContext::default();
        assert_eq!(paired.process_cbor(&[0x04], &cx), [0x00, 0xa1, 0x01, 0x02]);
        let (mut unpaired, _) = engine(None);
        // CTAP1_ERR_OTHER
        assert_eq!(unpaired.process_cbor(&[0x04], &cx), [0x7f]);
        assert!(requests.try_recv().is_err(), "nothing was forwarded");
    }

    #[test]
    fn without_a_link_the_browser_hears_a_timeout_in_its_protocol() {
        let (mut e, requests) = engine(None);
        drop(requests);
        let cx = RequestContext::default();
        assert_eq!(e.process_cbor(&[0x01, 0xa0], &cx), [CBOR_TIMEOUT]);
        assert_eq!(e.process_u2f(&[0x00, 0x01], &cx), SW_TIMEOUT);
    }

    #[test]
    fn a_forwarded_request_reports_the_user_step_then_returns_the_answer() {
        let (mut e, requests) = engine(None);
        let waiting = e.waiting.clone();
        let link = thread::spawn(move || {
            let Ok(ToLink::Request {
                kind,
                payload,
                reply,
            }) = requests.recv()
            else {
                panic!("a request");
            };
            assert_eq!((kind, payload), (CtapKind::Cbor, vec![0x01, 0xa0]));
            reply
                .send(Reply::Pending(PendingStatus::UserPresenceNeeded))
                .unwrap();
            reply.send(Reply::Done(vec![0x00, 0xa0])).unwrap();
        });
        let answer = e.process_cbor(&[0x01, 0xa0], &RequestContext::default());
        link.join().unwrap();
        assert_eq!(answer, [0x00, 0xa0]);
        assert!(!waiting.is_waiting(), "no longer waiting once answered");
    }

    #[test]
    fn the_browsers_cancel_goes_to_the_link_once() {
        let (mut e, requests) = engine(None);
        let cancel = CancelToken::new();
        cancel.cancel();
        let cx = RequestContext {
            cancel,
            ..RequestContext::default()
        };
        let link = thread::spawn(move || {
            let Ok(ToLink::Request { reply, .. }) = requests.recv() else {
                panic!("a request");
            };
            assert!(matches!(requests.recv(), Ok(ToLink::Cancel)));
            reply.send(Reply::Done(vec![CBOR_CANCELLED])).unwrap();
            requests
        });
        assert_eq!(e.process_cbor(&[0x01], &cx), [CBOR_CANCELLED]);
        let requests = link.join().unwrap();
        assert!(requests.try_recv().is_err(), "one cancel only");
    }
}
