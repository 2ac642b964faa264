//! The computer user's answers to the bridge's questions: whether to pair with the phone that
//! shows a confirmation code, and whether to serve a newly paired phone instead of the one
//! served so far (docs/pairing-protocol.md §5.3, §7).
//!
//! Answers are lines on standard input (a terminal or a pipe), read by a thread of their own
//! so that the link keeps serving the relay while it waits. Only `y` or `yes` (any case) is a
//! yes; anything else, the end of the input, or no answer within the session's confirmation
//! timeout is a no. `--auto-confirm` answers yes without reading, and says so on standard
//! error every time.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread;

use pocketkey_net::mailbox::Wakeup;

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
}

impl Answer {
    fn of(line: &str) -> Self {
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Answer::Yes,
            _ => Answer::No,
        }
    }
}

pub struct Confirmer {
    auto: bool,
    /// Lines of standard input (`None`: it ended), once the first question started the reader.
    lines: Option<Receiver<Option<String>>>,
    /// Standard input ended: every later question is answered no at once.
    ended: bool,
    /// A question is waiting for its answer.
    asking: bool,
    wakeup: Arc<Wakeup>,
}

impl Confirmer {
    /// `wakeup` is raised whenever an answer arrives.
    pub fn new(auto: bool, wakeup: Arc<Wakeup>) -> Self {
        Self {
            auto,
            lines: None,
            ended: false,
            asking: false,
            wakeup,
        }
    }

    /// Shows `situation` (one line) and `question` on standard output; the answer comes
    /// from [`Confirmer::answer`]. Lines typed before the question do not answer it.
    pub fn ask(&mut self, situation: &str, question: &str) {
        self.asking = true;
        if self.auto {
            // Ignored errors: a closed standard output must not stop the bridge.
            let _ = writeln!(std::io::stdout(), "{situation}");
            eprintln!(
                "*** --auto-confirm: answering YES without asking: {question} \
                 (for tests only: anyone who scans the code is accepted) ***"
            );
            return;
        }
        // Before the question shows: whatever answers it comes after.
        self.start_reader();
        if let Some(lines) = &self.lines {
            loop {
                match lines.try_recv() {
                    Ok(Some(_stale)) => continue,
                    Ok(None) | Err(TryRecvError::Disconnected) => {
                        self.ended = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{situation}");
        let _ = write!(out, "{question} [y/N] ");
        let _ = out.flush();
    }

    /// The answer to the open question, once there is one (`None`: still waiting).
    pub fn answer(&mut self) -> Option<Answer> {
        if !self.asking {
            return None;
        }
        let answer = if self.auto {
            Answer::Yes
        } else if self.ended {
            Answer::No
        } else {
            match self.lines.as_ref()?.try_recv() {
                Ok(Some(line)) => Answer::of(&line),
                Ok(None) | Err(TryRecvError::Disconnected) => {
                    self.ended = true;
                    Answer::No
                }
                Err(TryRecvError::Empty) => return None,
            }
        };
        self.asking = false;
        if !self.auto && !std::io::stdin().is_terminal() {
            // A terminal echoed the user's newline; a pipe did not: end the prompt's line.
            let _ = writeln!(std::io::stdout());
        }
        Some(answer)
    }

    /// The question is moot (its session ended or timed out): a late answer answers nothing.
    pub fn withdraw(&mut self) {
        if self.asking && !self.auto {
            let _ = writeln!(std::io::stdout());
        }
        self.asking = false;
    }

    fn start_reader(&mut self) {
        if self.lines.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let wakeup = Arc::clone(&self.wakeup);
        let spawned = thread::Builder::new()
            .name("pocketkey-stdin".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.send(Some(line)).is_err() {
                        return;
                    }
                    wakeup.wake();
                }
                // The link gone (the bridge stops): nobody asks any more.
                let _ = tx.send(None);
                wakeup.wake();
            });
        if spawned.is_err() {
            // No way to read an answer: every question is answered no.
            self.ended = true;
        }
        self.lines = Some(rx);
    }
}
