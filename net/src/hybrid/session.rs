//! One hybrid session on its own thread: tunnel, advert, handshake, CTAP requests, shutdown.
//! The thread sleeps on one [`Wakeup`], raised by the tunnel's reader, the engine's answer and
//! `cancel`, with its next deadline as the timeout.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pocketkey_core::cancel::CancelToken;
use pocketkey_core::engine::{Engine, RequestContext, RequestKind, Worker};
use pocketkey_core::hybrid::advert::{self, EidPlaintext};
use pocketkey_core::hybrid::keys;
use pocketkey_core::hybrid::qr::QrCode;
use pocketkey_core::hybrid::{self, Session, SessionConfig, SessionError, SessionEvent};
use rustls::ClientConfig;
use tungstenite::protocol::frame::coding::CloseCode;
use url::Url;

use super::advert::{Advert, AdvertSender};
use super::error::{Error, Wait};
use super::tunnel::{Incoming, Tunnel};
use crate::ws::Wakeup;

/// How a session that the browser ended went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// CTAP requests the browser sent (getInfo, makeCredential, getAssertion…).
    pub requests: u32,
}

type Finished = Result<Outcome, Error>;

struct Shared {
    cancel: CancelToken,
    /// What the session thread waits on.
    wakeup: Arc<Wakeup>,
    result: Mutex<Option<Finished>>,
    done: Condvar,
}

/// A running hybrid session (one scanned QR code). It runs on its own thread from
/// `start_hybrid` on; `wait` blocks until it ends, `cancel` ends it early. Dropping the handle
/// does not stop the session (it ends by itself: shutdown, error or timeout).
pub struct SessionHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionHandle {
    /// Blocks until the session ends: `Outcome` after the browser's shutdown, the
    /// `Error` otherwise. May be called again (and from several threads): same answer.
    pub fn wait(&self) -> Result<Outcome, Error> {
        let mut result = lock(&self.shared.result);
        loop {
            if let Some(r) = result.as_ref() {
                return r.clone();
            }
            result = self
                .shared
                .done
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Ends the session soon (at once, or within tens of milliseconds, or the time left to
    /// reach the tunnel server while connecting to it): the advert stops, a pending approval is cancelled, the tunnel closes,
    /// and `wait` returns `Cancelled` — unless the session had already ended.
    pub fn cancel(&self) {
        self.shared.cancel.cancel();
        self.shared.wakeup.wake();
    }

    /// Whether `wait` would return at once.
    pub fn is_finished(&self) -> bool {
        lock(&self.shared.result).is_some()
    }

    /// [`SessionHandle::wait`] for at most `timeout`; `None` if still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<Outcome, Error>> {
        let deadline = Instant::now() + timeout;
        let mut result = lock(&self.shared.result);
        loop {
            if let Some(r) = result.as_ref() {
                return Some(r.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            result = self
                .shared
                .done
                .wait_timeout(result, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Everything the session thread needs, checked by `start`.
pub(crate) struct Job {
    pub(crate) qr: QrCode,
    pub(crate) url: Url,
    pub(crate) domain_id: u16,
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) advertiser: Arc<dyn AdvertSender>,
    pub(crate) connect_timeout: Duration,
    pub(crate) browser_timeout: Duration,
    pub(crate) message_timeout: Duration,
}

/// Spawns the session thread.
pub(crate) fn spawn(job: Job) -> Result<SessionHandle, Error> {
    let shared = Arc::new(Shared {
        cancel: CancelToken::new(),
        wakeup: Wakeup::new(),
        result: Mutex::new(None),
        done: Condvar::new(),
    });
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("pocketkey-hybrid".into())
        .spawn(move || {
            let cancel = thread_shared.cancel.clone();
            let wakeup = thread_shared.wakeup.clone();
            let result = catch_unwind(AssertUnwindSafe(|| run(job, &cancel, wakeup)))
                .unwrap_or_else(|_| {
                    Err(Error::Internal {
                        detail: "the hybrid session panicked".into(),
                    })
                });
            *lock(&thread_shared.result) = Some(result);
            thread_shared.done.notify_all();
        })
        .map_err(|e| Error::Internal {
            detail: format!("cannot start the session thread: {e}"),
        })?;
    Ok(SessionHandle { shared })
}

/// The engine's getInfo (CBOR, without the status byte) for the post-handshake message.
fn get_info(engine: &dyn Engine) -> Result<Vec<u8>, Error> {
    match engine.get_info() {
        Ok(cbor) if !cbor.is_empty() => Ok(cbor),
        Ok(_) => Err(Error::Internal {
            detail: "getInfo answered no CBOR".into(),
        }),
        Err(status) => Err(Error::Internal {
            detail: format!("getInfo failed with status {status:#04x}"),
        }),
    }
}

fn run(job: Job, cancel: &CancelToken, wakeup: Arc<Wakeup>) -> Finished {
    let get_info = get_info(job.engine.as_ref())?;
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    let (tunnel, routing_id) = Tunnel::open(
        &job.url,
        &job.tls,
        job.connect_timeout,
        cancel,
        wakeup.clone(),
    )?;
    let eid = EidPlaintext::random(routing_id, job.domain_id);
    let service_data = advert::encrypt(&keys::eid_key(&job.qr.secret), &eid);
    let session = Session::new(SessionConfig::from_qr(&job.qr, &eid, get_info));
    let result = Advert::start(job.advertiser.clone(), service_data.to_vec()).and_then(|advert| {
        let worker =
            Worker::spawn("pocketkey-hybrid-ctap", Arc::clone(&job.engine)).map_err(|e| {
                Error::Internal {
                    detail: format!("cannot start the engine thread: {e}"),
                }
            })?;
        Pump {
            tunnel: &tunnel,
            wakeup,
            session,
            advert,
            worker,
            cancel,
            browser_timeout: job.browser_timeout,
            message_timeout: job.message_timeout,
        }
        .run()
    });
    tunnel.close(match &result {
        Ok(_) | Err(Error::Cancelled) => CloseCode::Normal,
        Err(Error::TimedOut { .. }) => CloseCode::Away,
        Err(_) => CloseCode::Protocol,
    });
    result
}

/// A CTAP request the engine's worker is working on. Dropping it cancels it.
struct Pending {
    /// The engine's answer (CTAP1_ERR_OTHER if it panicked).
    answer: Receiver<Vec<u8>>,
    cancel: CancelToken,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Pump<'a> {
    tunnel: &'a Tunnel,
    wakeup: Arc<Wakeup>,
    session: Session,
    advert: Advert,
    worker: Worker<'static>,
    cancel: &'a CancelToken,
    browser_timeout: Duration,
    message_timeout: Duration,
}

impl Pump<'_> {
    fn run(mut self) -> Finished {
        let mut waiting_for = Wait::Browser;
        let mut deadline = Instant::now() + self.browser_timeout;
        let mut pending: Option<Pending> = None;
        let mut requests: u32 = 0;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if let Some(p) = &pending {
                match p.answer.try_recv() {
                    Ok(response) => {
                        pending = None;
                        self.session.respond(&response).map_err(session_error)?;
                        self.flush()?;
                        deadline = Instant::now() + self.message_timeout;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        return Err(Error::Internal {
                            detail: "the engine ended without an answer".into(),
                        })
                    }
                }
            }
            // While the engine (the user) works on a request, its approval timeout applies.
            let now = Instant::now();
            if pending.is_none() && now >= deadline {
                return Err(Error::TimedOut { waiting_for });
            }
            let frame = match self.tunnel.try_next()? {
                None => {
                    // Nothing to do until the tunnel, the engine or cancel wakes us, or the
                    // deadline (none while the engine works).
                    self.wakeup.wait(match pending {
                        None => deadline - now,
                        Some(_) => Duration::MAX,
                    });
                    continue;
                }
                Some(Incoming::Frame(frame)) => frame,
                Some(Incoming::Closed(detail)) => {
                    return Err(Error::TunnelClosed {
                        detail: match waiting_for {
                            Wait::Browser => {
                                format!("before the browser connected: {detail}")
                            }
                            _ => detail,
                        },
                    })
                }
            };
            if waiting_for == Wait::Browser {
                // The browser's handshake message: it has seen the advert.
                self.advert.stop();
            }
            self.session.receive(&frame).map_err(session_error)?;
            self.flush()?;
            while let Some(event) = self.session.poll_event() {
                match event {
                    SessionEvent::Handshaked { .. } => {
                        waiting_for = Wait::BrowserMessage;
                    }
                    SessionEvent::CtapRequest(request) => {
                        requests = requests.saturating_add(1);
                        pending = Some(self.dispatch(request)?);
                    }
                    SessionEvent::Shutdown => return Ok(Outcome { requests }),
                }
            }
            deadline = Instant::now() + self.message_timeout;
        }
    }

    fn flush(&mut self) -> Result<(), Error> {
        while let Some(frame) = self.session.poll_frame() {
            self.tunnel.send(frame)?;
        }
        Ok(())
    }

    /// Hands a request to the engine's worker, so that the tunnel stays read (a shutdown or
    /// a dropped tunnel cancels the approval at once). The worker wakes the loop with its
    /// answer.
    fn dispatch(&self, request: Vec<u8>) -> Result<Pending, Error> {
        let (tx, rx) = mpsc::channel();
        let cancel = CancelToken::new();
        let cx = RequestContext {
            cancel: cancel.clone(),
            requester: hybrid::session::requester(),
        };
        let wakeup = self.wakeup.clone();
        self.worker
            .submit(RequestKind::Cbor, request, cx, move |answer| {
                // The loop may have ended meanwhile (its Pending dropped).
                let _ = tx.send(answer);
                wakeup.wake();
            })
            .map_err(|e| Error::Internal {
                detail: e.to_string(),
            })?;
        Ok(Pending { answer: rx, cancel })
    }
}

fn session_error(e: SessionError) -> Error {
    match e {
        SessionError::Handshake(e) => Error::HandshakeFailed {
            detail: e.to_string(),
        },
        SessionError::Transport(_)
        | SessionError::EmptyMessage
        | SessionError::RequestWhileBusy
        | SessionError::UnknownMessageType(_) => Error::TransportFailed {
            detail: e.to_string(),
        },
        SessionError::NoPendingRequest | SessionError::Closed => Error::Internal {
            detail: e.to_string(),
        },
    }
}
