//! Approving requests at the terminal: the desktop stand-in for the phone's notification and
//! biometric prompt.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use pocketkey_core::approver::{
    ApprovalOutcome, ApprovalRequest, Approver, AutoApprover, Operation, UvBinding,
};
use pocketkey_core::cancel::CancelToken;

/// How often the prompt checks for cancellation.
const POLL: Duration = Duration::from_millis(50);

/// The approver of `serve`, `pair` and `hybrid`: `--auto-approve` or the terminal prompt.
/// Says once, on standard error, how its user verification is backed: neither is bound to
/// hardware (a phone's answer carries a signature by a biometric-gated key; these don't).
pub fn desktop_approver(auto_approve: bool) -> Box<dyn Approver> {
    let approver: Box<dyn Approver> = if auto_approve {
        Box::new(AutoApprover)
    } else {
        Box::new(TerminalApprover::new())
    };
    if let UvBinding::Software { reason } = approver.uv_binding() {
        eprintln!("user verification: {reason}");
    }
    approver
}

/// Prints each request on stderr (or another writer) and reads the answer from the terminal.
///
/// Answers: `y` approve with verification, `p` presence only, `n` deny, a number: approve
/// with verification for that account.
pub struct TerminalApprover {
    lines: Receiver<String>,
    out: Box<dyn Write + Send>,
}

impl TerminalApprover {
    /// Reads answers from `/dev/tty`, or standard input when there is no terminal, and writes
    /// prompts to standard error.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("pocketkey-tty".into())
            .spawn(move || {
                let input: Box<dyn BufRead> = match File::open("/dev/tty") {
                    Ok(tty) => Box::new(BufReader::new(tty)),
                    Err(_) => Box::new(BufReader::new(io::stdin())),
                };
                for line in input.lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| eprintln!("cannot start the terminal reader: {e}"));
        Self::with_io(rx, Box::new(io::stderr()))
    }

    /// Reads answers from `lines` and writes prompts to `out` (for tests).
    pub fn with_io(lines: Receiver<String>, out: Box<dyn Write + Send>) -> Self {
        Self { lines, out }
    }

    fn say(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

impl Default for TerminalApprover {
    fn default() -> Self {
        Self::new()
    }
}

fn operation_text(operation: Operation) -> &'static str {
    match operation {
        Operation::Register => "register a new passkey (make credential)",
        Operation::SignIn => "sign in (get assertion)",
        Operation::VerifyUser => "verify you, to unlock the key for the computer",
        Operation::U2fRegister => "register (U2F)",
        Operation::U2fSignIn => "sign in (U2F)",
        Operation::Select => "select this security key",
        Operation::Reset => "RESET: erase every passkey and the PIN",
    }
}

fn name_pair(name: Option<&str>, display: Option<&str>) -> Option<String> {
    match (name, display) {
        (Some(n), Some(d)) if n != d => Some(format!("{n} ({d})")),
        (Some(n), _) => Some(n.to_string()),
        (None, Some(d)) => Some(d.to_string()),
        (None, None) => None,
    }
}

/// Keeps control characters from the relying party out of the terminal.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The full text shown for a request.
pub fn describe(request: &ApprovalRequest) -> String {
    let mut text = String::from("\n=== PocketKey: approval requested ===\n");
    text += &format!("  operation : {}\n", operation_text(request.operation));
    match (&request.rp_id, &request.rp_name) {
        (Some(id), Some(name)) if id != name => {
            text += &format!("  site      : {} ({})\n", clean(id), clean(name))
        }
        (Some(id), _) => text += &format!("  site      : {}\n", clean(id)),
        (None, Some(name)) => text += &format!("  site      : {}\n", clean(name)),
        (None, None) => {}
    }
    if let Some(user) = name_pair(
        request.user_name.as_deref(),
        request.user_display_name.as_deref(),
    ) {
        text += &format!("  user      : {}\n", clean(&user));
    }
    text += &format!("  from      : {}\n", clean(&request.requester.0));
    text += &format!(
        "  needs     : {}\n",
        if request.verification_required {
            "user verification"
        } else {
            "user presence"
        }
    );
    if !request.accounts.is_empty() {
        text += "  accounts  :\n";
        for (i, account) in request.accounts.iter().enumerate() {
            let shown = name_pair(
                account.user_name.as_deref(),
                account.display_name.as_deref(),
            )
            .map(|s| clean(&s))
            .unwrap_or_else(|| format!("user id {}", hex(&account.user_id)));
            text += &format!("    {}. {shown}\n", i + 1);
        }
    }
    text += "  answer: y = approve (verified), p = presence only, n = deny";
    match request.accounts.len() {
        0 => {}
        1 => text += ", 1 = the account",
        n => text += &format!(", 1-{n} = approve for that account (y/p: account 1)"),
    }
    text += &format!("\n  (times out in {} s) > ", request.timeout.as_secs());
    text
}

enum Answer {
    Outcome(ApprovalOutcome),
    Invalid,
}

fn parse(line: &str, accounts: usize) -> Answer {
    let default_account = (accounts > 0).then_some(0);
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Answer::Outcome(ApprovalOutcome::Verified {
            account: default_account,
            proof: None,
        }),
        "p" => Answer::Outcome(ApprovalOutcome::Present {
            account: default_account,
        }),
        "n" | "no" => Answer::Outcome(ApprovalOutcome::Denied),
        other => match other.parse::<usize>() {
            Ok(n) if (1..=accounts).contains(&n) => Answer::Outcome(ApprovalOutcome::Verified {
                account: Some(n - 1),
                proof: None,
            }),
            _ => Answer::Invalid,
        },
    }
}

impl Approver for TerminalApprover {
    fn can_verify_user(&self) -> bool {
        true
    }

    fn uv_binding(&self) -> UvBinding {
        UvBinding::Software {
            reason: "terminal prompt, not bound to hardware",
        }
    }

    fn approve(&mut self, request: &ApprovalRequest, cancel: &CancelToken) -> ApprovalOutcome {
        // Forget anything typed while nobody was asking.
        while self.lines.try_recv().is_ok() {}
        self.say(&describe(request));
        let deadline = Instant::now() + request.timeout;
        loop {
            if cancel.is_cancelled() {
                self.say("\ncancelled by the computer\n");
                return ApprovalOutcome::Cancelled;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.say("\ntimed out: not approved\n");
                return ApprovalOutcome::TimedOut;
            }
            match self.lines.recv_timeout(left.min(POLL)) {
                Ok(line) => match parse(&line, request.accounts.len()) {
                    Answer::Outcome(outcome) => {
                        let said = match outcome {
                            ApprovalOutcome::Denied => "denied\n".to_string(),
                            ApprovalOutcome::Present { .. } => {
                                "approved (presence only)\n".to_string()
                            }
                            _ => match outcome.account() {
                                Some(i) if !request.accounts.is_empty() => {
                                    format!("approved (verified) for account {}\n", i + 1)
                                }
                                _ => "approved (verified)\n".to_string(),
                            },
                        };
                        self.say(&said);
                        return outcome;
                    }
                    Answer::Invalid => self.say("  please answer y, p, n or an account number > "),
                },
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.say("\nno terminal input (end of file): denied\n");
                    return ApprovalOutcome::Denied;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pocketkey_core::approver::{AccountChoice, Requester, UvChallenge};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn request(accounts: usize, timeout: Duration) -> ApprovalRequest {
        ApprovalRequest {
            operation: Operation::SignIn,
            rp_id: Some("example.com".into()),
            rp_name: Some("Example\u{1b}[31m".into()),
            user_name: Some("alice".into()),
            user_display_name: Some("Alice Liddell".into()),
            requester: Requester("Work laptop".into()),
            accounts: (0..accounts)
                .map(|i| AccountChoice {
                    user_name: (i != 1).then(|| format!("user{i}")),
                    display_name: None,
                    user_id: vec![0xab, i as u8],
                })
                .collect(),
            verification_required: true,
            timeout,
            uv_challenge: UvChallenge::new(Operation::SignIn, Some("example.com")),
        }
    }

    fn run(
        lines: &[&str],
        req: &ApprovalRequest,
        cancel: &CancelToken,
    ) -> (ApprovalOutcome, String) {
        let (tx, rx) = mpsc::channel();
        let out = Shared::default();
        let mut approver = TerminalApprover::with_io(rx, Box::new(out.clone()));
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        let feeder = std::thread::spawn(move || {
            // Typed after the prompt (the approver drains earlier input).
            std::thread::sleep(Duration::from_millis(100));
            for line in lines {
                let _ = tx.send(line);
            }
            std::thread::sleep(Duration::from_millis(2000));
        });
        let outcome = approver.approve(req, cancel);
        drop(feeder);
        (outcome, out.text())
    }

    #[test]
    fn shows_everything_about_the_request() {
        let req = request(3, Duration::from_secs(5));
        let text = describe(&req);
        for needle in [
            "sign in",
            "example.com",
            "Example?[31m",
            "alice (Alice Liddell)",
            "Work laptop",
            "1. user0",
            "2. user id ab01",
            "3. user2",
            "verification",
            "1-3",
        ] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn answers() {
        let none = CancelToken::new();
        let req = request(0, Duration::from_secs(5));
        assert_eq!(
            run(&["y"], &req, &none).0,
            ApprovalOutcome::Verified {
                account: None,
                proof: None
            }
        );
        assert_eq!(
            run(&["p"], &req, &none).0,
            ApprovalOutcome::Present { account: None }
        );
        assert_eq!(run(&["n"], &req, &none).0, ApprovalOutcome::Denied);
        let (outcome, text) = run(&["what", " Y "], &req, &none);
        assert_eq!(
            outcome,
            ApprovalOutcome::Verified {
                account: None,
                proof: None
            }
        );
        assert!(text.contains("please answer"));
        let req = request(3, Duration::from_secs(5));
        assert_eq!(
            run(&["2"], &req, &none).0,
            ApprovalOutcome::Verified {
                account: Some(1),
                proof: None
            }
        );
        assert_eq!(
            run(&["y"], &req, &none).0,
            ApprovalOutcome::Verified {
                account: Some(0),
                proof: None
            }
        );
        assert_eq!(
            run(&["4", "0", "3"], &req, &none).0,
            ApprovalOutcome::Verified {
                account: Some(2),
                proof: None
            }
        );
    }

    #[test]
    fn times_out() {
        let req = request(0, Duration::from_millis(300));
        let start = Instant::now();
        let (outcome, text) = run(&[], &req, &CancelToken::new());
        assert_eq!(outcome, ApprovalOutcome::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(text.contains("timed out"));
    }

    #[test]
    fn cancellation_ends_the_prompt() {
        let req = request(0, Duration::from_secs(30));
        let cancel = CancelToken::new();
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            c.cancel();
        });
        let start = Instant::now();
        let (outcome, text) = run(&[], &req, &cancel);
        assert_eq!(outcome, ApprovalOutcome::Cancelled);
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(text.contains("cancelled by the computer"));
    }

    #[test]
    fn end_of_input_denies() {
        let (tx, rx) = mpsc::channel::<String>();
        drop(tx);
        let mut approver = TerminalApprover::with_io(rx, Box::new(Shared::default()));
        let outcome = approver.approve(&request(0, Duration::from_secs(5)), &CancelToken::new());
        assert_eq!(outcome, ApprovalOutcome::Denied);
    }
}
