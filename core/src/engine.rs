//! The one interface every transport drives a security key through: CTAPHID over UDP and
//! uhid, the bridge's forwarding to a paired phone, a paired computer's requests on the phone,
//! and a hybrid browser. A transport hands the [`Engine`] a request of a [`RequestKind`] with
//! a [`RequestContext`] and sends back the bytes it returns; a [`Worker`] runs those calls on a
//! thread of their own, so the transport keeps reading (CANCEL, KEEPALIVE) while the user is
//! asked, and turns a panic into the kind's failure answer.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crate::authenticator::{command, sw, Authenticator};
use crate::ctap::CtapError;
use crate::hid::Command;

pub use crate::authenticator::RequestContext;

/// Which engine entry point a request is for. The discriminants are the CTAPHID command
/// bytes (CTAP 2.1 §11.2.9.1), which the pairing protocol carries as the request's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RequestKind {
    /// CTAPHID_CBOR: a CTAP2 request (command byte ‖ CBOR); answer: status ‖ CBOR.
    Cbor = 0x10,
    /// CTAPHID_MSG: a CTAP1/U2F APDU; answer: data ‖ SW1 SW2.
    Msg = 0x03,
}

/// authenticatorGetInfo as a CTAP2 request: the command byte alone (CTAP 2.1 §6.4).
pub const GET_INFO_REQUEST: &[u8] = &[command::GET_INFO];

impl RequestKind {
    /// The kind a CTAPHID command byte names, if it names one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x10 => Some(Self::Cbor),
            0x03 => Some(Self::Msg),
            _ => None,
        }
    }

    /// The CTAPHID command a request of this kind arrives as and is answered with.
    pub fn command(self) -> Command {
        match self {
            Self::Cbor => Command::Cbor,
            Self::Msg => Command::Msg,
        }
    }

    /// The answer meaning `error` in this kind's format: the CTAP2 status byte alone, or for
    /// U2F the status word closest to it. U2F has no cancel or timeout status: "conditions
    /// not satisfied" is its "user presence missing, try again" (FIDO U2F Raw Message
    /// Formats §3.3), and everything else is "no precise diagnosis".
    pub fn failure(self, error: CtapError) -> Vec<u8> {
        match self {
            Self::Cbor => vec![error.code()],
            Self::Msg => {
                let word = match error {
                    CtapError::UserActionTimeout
                    | CtapError::KeepaliveCancel
                    | CtapError::OperationDenied
                    | CtapError::UpRequired => sw::CONDITIONS_NOT_SATISFIED,
                    _ => sw::NO_PRECISE_DIAGNOSIS,
                };
                word.to_be_bytes().to_vec()
            }
        }
    }
}

/// A security key as every transport sees it. Shared between the thread that reads the
/// transport and the one that runs requests, so it takes `&self`; the real engine is a
/// `Mutex<Authenticator>` (one request at a time).
pub trait Engine: Send + Sync {
    /// One request: CBOR (command ‖ CBOR → status ‖ CBOR) or MSG (APDU → data ‖ SW). May
    /// block while the user is asked; `cx.cancel` ends that wait.
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8>;

    /// Drop volatile state as if the key had been unplugged and plugged in again.
    fn power_cycle(&self) {}

    /// Whether the engine is asking the user right now (KEEPALIVE / `Pending` UPNEEDED
    /// instead of PROCESSING).
    fn waiting_for_user(&self) -> bool {
        false
    }

    /// The authenticatorGetInfo response CBOR without its status byte; `Err(status)` when
    /// the engine answers an error.
    fn get_info(&self) -> Result<Vec<u8>, u8> {
        let response = self.process(
            RequestKind::Cbor,
            GET_INFO_REQUEST,
            &RequestContext::default(),
        );
        match response.split_first() {
            Some((0x00, cbor)) => Ok(cbor.to_vec()),
            Some((&status, _)) => Err(status),
            None => Err(CtapError::Other.code()),
        }
    }
}

impl Engine for Mutex<Authenticator> {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        // A panic inside the engine poisons the lock; its state is the store's, which
        // commits per request, so the next request may go on.
        let mut engine = self.lock().unwrap_or_else(PoisonError::into_inner);
        match kind {
            RequestKind::Cbor => engine.process_cbor(payload, cx),
            RequestKind::Msg => engine.process_u2f(payload, cx),
        }
    }

    fn power_cycle(&self) {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .power_cycle()
    }
}

impl<E: Engine + ?Sized> Engine for Arc<E> {
    fn process(&self, kind: RequestKind, payload: &[u8], cx: &RequestContext) -> Vec<u8> {
        (**self).process(kind, payload, cx)
    }
    fn power_cycle(&self) {
        (**self).power_cycle()
    }
    fn waiting_for_user(&self) -> bool {
        (**self).waiting_for_user()
    }
    fn get_info(&self) -> Result<Vec<u8>, u8> {
        (**self).get_info()
    }
}

/// Runs one request, turning a panic into the kind's CTAP1_ERR_OTHER / "no precise
/// diagnosis" answer: a bug in one request must not take the transport down with it.
pub fn process_caught(
    engine: &dyn Engine,
    kind: RequestKind,
    payload: &[u8],
    cx: &RequestContext,
) -> Vec<u8> {
    catch_unwind(AssertUnwindSafe(|| engine.process(kind, payload, cx))).unwrap_or_else(|_| {
        eprintln!("error: the engine panicked; answering with an error");
        kind.failure(CtapError::Other)
    })
}

/// What the worker does with an answer (on the worker's thread).
type OnAnswer<'a> = Box<dyn FnOnce(Vec<u8>) + Send + 'a>;

enum Work<'a> {
    Request {
        kind: RequestKind,
        payload: Vec<u8>,
        cx: RequestContext,
        on_answer: OnAnswer<'a>,
    },
    PowerCycle,
}

/// The worker has stopped; the request was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the engine's worker has stopped")]
pub struct WorkerGone;

enum WorkerThread<'scope> {
    Owned(JoinHandle<()>),
    Scoped(ScopedJoinHandle<'scope, ()>),
}

impl WorkerThread<'_> {
    fn is_finished(&self) -> bool {
        match self {
            Self::Owned(t) => t.is_finished(),
            Self::Scoped(t) => t.is_finished(),
        }
    }
    fn join(self) {
        // The loop catches the engine's panics; a panic here is an answer closure's, already
        // reported on stderr by the default hook.
        let _ = match self {
            Self::Owned(t) => t.join(),
            Self::Scoped(t) => t.join(),
        };
    }
}

/// One thread that runs an engine's requests one at a time, in order. Each request's answer
/// goes to the closure it was submitted with, on the worker's thread, so the transport can
/// send it under its own lock. The thread ends after the request it runs once the worker is
/// dropped, [stopped](Worker::stop) or [joined](Worker::join).
///
/// [`Worker::spawn`] owns its engine; [`Worker::spawn_scoped`] borrows one for a
/// [`thread::scope`], whose end also waits for the thread, and its answer closures may borrow
/// from outside the scope.
pub struct Worker<'scope> {
    jobs: Option<Sender<Work<'scope>>>,
    thread: Option<WorkerThread<'scope>>,
}

impl Worker<'static> {
    /// Starts the thread `name` serving `engine`.
    pub fn spawn<E: Engine + 'static>(name: &str, engine: E) -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || serve_queue(&engine, queue))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(WorkerThread::Owned(thread)),
        })
    }
}

impl<'scope> Worker<'scope> {
    /// Starts the thread `name` in `scope`, serving the borrowed `engine`.
    pub fn spawn_scoped<'env>(
        scope: &'scope thread::Scope<'scope, 'env>,
        name: &str,
        engine: &'scope dyn Engine,
    ) -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn_scoped(scope, move || serve_queue(engine, queue))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(WorkerThread::Scoped(thread)),
        })
    }

    /// Queues a request; `on_answer` gets its answer. `Err` when the worker is gone.
    pub fn submit(
        &self,
        kind: RequestKind,
        payload: Vec<u8>,
        cx: RequestContext,
        on_answer: impl FnOnce(Vec<u8>) + Send + 'scope,
    ) -> Result<(), WorkerGone> {
        let work = Work::Request {
            kind,
            payload,
            cx,
            on_answer: Box::new(on_answer),
        };
        self.send(work)
    }

    /// Queues a power cycle (after the requests queued before it).
    pub fn power_cycle(&self) -> Result<(), WorkerGone> {
        self.send(Work::PowerCycle)
    }

    fn send(&self, work: Work<'scope>) -> Result<(), WorkerGone> {
        match &self.jobs {
            Some(jobs) => jobs.send(work).map_err(|_| WorkerGone),
            None => Err(WorkerGone),
        }
    }

    /// Takes no more requests and waits up to `patience` for the running one to end (the
    /// caller cancels it first). Returns whether the thread ended; one that did not (an
    /// engine stuck past its cancel) is left to end on its own.
    pub fn stop(mut self, patience: Duration) -> bool {
        self.jobs = None;
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let deadline = Instant::now() + patience;
        while !thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let finished = thread.is_finished();
        if finished {
            thread.join();
        }
        finished
    }

    /// Takes no more requests and waits for the queued ones to be answered.
    pub fn join(mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            thread.join();
        }
    }
}

/// The worker's loop: every request through [`process_caught`], until the queue closes.
fn serve_queue(engine: &dyn Engine, queue: Receiver<Work<'_>>) {
    for work in queue {
        match work {
            Work::Request {
                kind,
                payload,
                cx,
                on_answer,
            } => on_answer(process_caught(engine, kind, &payload, &cx)),
            Work::PowerCycle => {
                if catch_unwind(AssertUnwindSafe(|| engine.power_cycle())).is_err() {
                    eprintln!("error: the engine panicked during power cycle");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Panics;
    impl Engine for Panics {
        fn process(&self, _: RequestKind, _: &[u8], _: &RequestContext) -> Vec<u8> {
            panic!("an engine bug");
        }
        fn power_cycle(&self) {
            panic!("another engine bug");
        }
    }

    /// Echoes CBOR requests with status 0 and counts power cycles.
    #[derive(Default)]
    struct Echo(AtomicUsize);
    impl Engine for Echo {
        fn process(&self, kind: RequestKind, payload: &[u8], _: &RequestContext) -> Vec<u8> {
            match kind {
                RequestKind::Cbor => [&[0x00], payload].concat(),
                RequestKind::Msg => [payload, &[0x90, 0x00]].concat(),
            }
        }
        fn power_cycle(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn kinds_are_the_ctaphid_command_bytes() {
        for kind in [RequestKind::Cbor, RequestKind::Msg] {
            assert_eq!(RequestKind::from_byte(kind as u8), Some(kind));
            assert_eq!(kind.command() as u8, kind as u8);
        }
        assert_eq!(RequestKind::from_byte(0x06), None);
    }

    #[test]
    fn failure_answers() {
        assert_eq!(RequestKind::Cbor.failure(CtapError::Other), [0x7f]);
        assert_eq!(RequestKind::Msg.failure(CtapError::Other), [0x6f, 0x00]);
        assert_eq!(
            RequestKind::Cbor.failure(CtapError::UserActionTimeout),
            [0x2f]
        );
        assert_eq!(
            RequestKind::Msg.failure(CtapError::UserActionTimeout),
            [0x69, 0x85]
        );
        assert_eq!(GET_INFO_REQUEST, [0x04]);
    }

    #[test]
    fn get_info_strips_the_status_or_reports_it() {
        struct Answers(Vec<u8>);
        impl Engine for Answers {
            fn process(&self, kind: RequestKind, payload: &[u8], _: &RequestContext) -> Vec<u8> {
                assert_eq!((kind, payload), (RequestKind::Cbor, GET_INFO_REQUEST));
                self.0.clone()
            }
        }
        assert_eq!(Answers(vec![0x00, 0xa0]).get_info(), Ok(vec![0xa0]));
        assert_eq!(Answers(vec![0x7f]).get_info(), Err(0x7f));
        assert_eq!(Answers(vec![]).get_info(), Err(0x7f));
    }

    #[test]
    fn a_panicking_engine_answers_the_kinds_failure_and_the_worker_goes_on() {
        let worker = Worker::spawn("test-worker", Panics).unwrap();
        let (answers, answered) = mpsc::channel();
        for kind in [RequestKind::Cbor, RequestKind::Msg] {
            let answers = answers.clone();
            worker
                .submit(kind, vec![0x01], RequestContext::default(), move |a| {
                    answers.send(a).unwrap()
                })
                .unwrap();
        }
        worker.power_cycle().unwrap();
        let answers2 = answers.clone();
        worker
            .submit(
                RequestKind::Cbor,
                vec![0x04],
                RequestContext::default(),
                move |a| answers2.send(a).unwrap(),
            )
            .unwrap();
        let timeout = Duration::from_secs(5);
        assert_eq!(answered.recv_timeout(timeout).unwrap(), [0x7f]);
        assert_eq!(answered.recv_timeout(timeout).unwrap(), [0x6f, 0x00]);
        // Still serving after a panicking power cycle.
        assert_eq!(answered.recv_timeout(timeout).unwrap(), [0x7f]);
        assert!(worker.stop(timeout));
    }

    #[test]
    fn a_scoped_worker_borrows_its_engine_and_answers_into_borrowed_state() {
        let engine = Echo::default();
        let answers = Mutex::new(Vec::new());
        thread::scope(|scope| {
            let worker = Worker::spawn_scoped(scope, "test-worker", &engine).unwrap();
            for payload in [vec![0x04], vec![0x01, 0x02]] {
                let answers = &answers;
                worker
                    .submit(
                        RequestKind::Cbor,
                        payload,
                        RequestContext::default(),
                        move |a| answers.lock().unwrap().push(a),
                    )
                    .unwrap();
            }
            worker.join();
        });
        assert_eq!(
            answers.into_inner().unwrap(),
            [vec![0x00, 0x04], vec![0x00, 0x01, 0x02]]
        );
    }

    #[test]
    fn the_worker_runs_requests_and_power_cycles_in_order() {
        let engine = Arc::new(Echo::default());
        let worker = Worker::spawn("test-worker", Arc::clone(&engine)).unwrap();
        let (answers, answered) = mpsc::channel();
        worker.power_cycle().unwrap();
        let seen = Arc::clone(&engine);
        worker
            .submit(
                RequestKind::Msg,
                vec![0x00, 0x03],
                RequestContext::default(),
                move |a| answers.send((a, seen.0.load(Ordering::SeqCst))).unwrap(),
            )
            .unwrap();
        let (answer, cycles) = answered.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(answer, [0x00, 0x03, 0x90, 0x00]);
        assert_eq!(
            cycles, 1,
            "the power cycle ran before the request queued after it"
        );
        assert!(worker.stop(Duration::from_secs(5)));
    }
}
