//! The engine the CTAPHID transport runs while the phone holds the keys: getInfo from the
//! cached copy, every other request handed to the link thread, which forwards it to the phone
//! and hands back the phone's status updates and answer. The transport's worker blocks in
//! [`ForwardingEngine`] meanwhile, looking at the browser's cancel.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pocketkey_core::authenticator::command;
use pocketkey_core::ctap::CtapError;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind};
use pocketkey_core::pairing::PendingStatus;
use pocketkey_net::mailbox::{trace, Wakeup};

use crate::engine::WaitingForUser;

/// How often a request waiting for the phone looks at the browser's cancel (a flag).
const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// The answer the browser gets when the phone did not answer in time (or the link is gone):
/// CTAP2_ERR_USER_ACTION_TIMEOUT, or for U2F SW_CONDITIONS_NOT_SATISFIED.
pub(crate) fn timeout_answer(kind: RequestKind) -> Vec<u8> {
    kind.failure(CtapError::UserActionTimeout)
}

/// The answer to a request the browser cancelled before the phone had it:
/// CTAP2_ERR_KEEPALIVE_CANCEL (the status byte whatever the kind, as the bridge has always
/// answered).
pub(crate) fn cancelled_answer() -> Vec<u8> {
    RequestKind::Cbor.failure(CtapError::KeepaliveCancel)
}

/// From the transport worker to the link thread.
pub enum ToLink {
    Request {
        kind: RequestKind,
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
    fn forward(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
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
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        if kind == RequestKind::Cbor && payload.first() == Some(&command::GET_INFO) {
            return match &*self.get_info.lock().unwrap_or_else(PoisonError::into_inner) {
                Some(info) => [&[0x00][..], info].concat(),
                // No phone paired yet.
                None => kind.failure(CtapError::Other),
            };
        }
        self.forward(kind, payload, cx)
    }
    fn waiting_for_user(&self) -> bool {
        self.waiting.is_waiting()
    }
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
        let (paired, requests) = engine(Some(vec![0xa1, 0x01, 0x02]));
        let cx = RequestContext::default();
        assert_eq!(
            paired.process(RequestKind::Cbor, &[0x04], &cx),
            [0x00, 0xa1, 0x01, 0x02]
        );
        let (unpaired, _) = engine(None);
        // CTAP1_ERR_OTHER
        assert_eq!(unpaired.process(RequestKind::Cbor, &[0x04], &cx), [0x7f]);
        assert!(requests.try_recv().is_err(), "nothing was forwarded");
    }

    #[test]
    fn without_a_link_the_browser_hears_a_timeout_in_its_protocol() {
        let (e, requests) = engine(None);
        drop(requests);
        let cx = RequestContext::default();
        assert_eq!(e.process(RequestKind::Cbor, &[0x01, 0xa0], &cx), [0x2f]);
        assert_eq!(
            e.process(RequestKind::Msg, &[0x00, 0x01], &cx),
            [0x69, 0x85]
        );
    }

    #[test]
    fn a_forwarded_request_reports_the_user_step_then_returns_the_answer() {
        let (e, requests) = engine(None);
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
            assert_eq!((kind, payload), (RequestKind::Cbor, vec![0x01, 0xa0]));
            reply
                .send(Reply::Pending(PendingStatus::UserPresenceNeeded))
                .unwrap();
            reply.send(Reply::Done(vec![0x00, 0xa0])).unwrap();
        });
        let answer = e.process(RequestKind::Cbor, &[0x01, 0xa0], &RequestContext::default());
        link.join().unwrap();
        assert_eq!(answer, [0x00, 0xa0]);
        assert!(!waiting.is_waiting(), "no longer waiting once answered");
    }

    #[test]
    fn the_browsers_cancel_goes_to_the_link_once() {
        let (e, requests) = engine(None);
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
            reply.send(Reply::Done(vec![0x2d])).unwrap();
            requests
        });
        assert_eq!(e.process(RequestKind::Cbor, &[0x01], &cx), [0x2d]);
        let requests = link.join().unwrap();
        assert!(requests.try_recv().is_err(), "one cancel only");
    }
}
