//! A browser's side of a hybrid sign-in, for end-to-end tests of phone apps against a real
//! tunnel server (pocketkey-relay):
//!
//!     pocketkey-hybrid-browser --relay ws://127.0.0.1:PORT [--rp hybrid.example]
//!
//! Prints the `FIDO:/…` QR text as its first stdout line, then reads one line on stdin: the
//! phone's BLE service data (20 bytes as 40 hex digits, optionally after `advert: `, as
//! `pocketkey hybrid` prints it) — on loopback the test carries the advert, there is no radio.
//! Then joins the tunnel, runs the handshake, registers a credential for the RP and signs in
//! with it, and checks both as a relying party would. Last stdout line:
//! `result: verified rp=<rp> credential=<hex> sign_count=<n>` (exit 0) or
//! `result: failed <reason>` (exit 1).

use std::io::BufRead;
use std::process::ExitCode;

use ciborium::value::Value;
use pocketkey_core::hybrid::session::MessageType;
use pocketkey_testkit::hybrid::{self, hex, unhex, Browser};

struct Args {
    relay: String,
    rp: String,
}

fn args() -> Result<Args, String> {
    let mut relay = None;
    let mut rp = "hybrid.example".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--relay" => relay = it.next(),
            "--rp" => rp = it.next().ok_or("--rp needs a value")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        relay: relay.ok_or("usage: pocketkey-hybrid-browser --relay URL [--rp ID]")?,
        rp,
    })
}

fn run(args: &Args) -> Result<String, String> {
    let browser = Browser::new();
    println!("{}", browser.qr());

    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("read the advert: {e}"))?;
    let digits = line.trim();
    let digits = digits.strip_prefix("advert: ").unwrap_or(digits);
    let service_data = unhex(digits).ok_or("the advert line is not hex digits")?;
    let eid = browser
        .read_advert(&service_data)
        .ok_or("the advert is not for this QR code")?;

    let mut ws = browser.connect(&args.relay, &eid)?;
    let (mut crypter, post) = browser.handshake(&mut ws, &eid)?;
    let info: Value =
        ciborium::from_reader(&post.get_info[..]).map_err(|e| format!("getInfo CBOR: {e}"))?;
    let aaguid = hybrid::info_aaguid(&info).ok_or("getInfo names no AAGUID")?;
    let verified = hybrid::register_and_sign_in(&mut ws, &mut crypter, &aaguid, &args.rp)?;
    hybrid::send(&mut ws, &mut crypter, MessageType::Shutdown, &[]);
    Ok(format!(
        "rp={} credential={} sign_count={}",
        args.rp,
        hex(&verified.credential_id),
        verified.sign_count
    ))
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("pocketkey-hybrid-browser: {e}");
            return ExitCode::from(2);
        }
    };
    // A failed relying-party check panics inside the shared checks: report it as a failure line.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("pocketkey-hybrid-browser: {info}")
    }));
    let outcome = std::panic::catch_unwind(|| run(&args))
        .unwrap_or_else(|_| Err("a relying-party check failed (see stderr)".into()));
    match outcome {
        Ok(verified) => {
            println!("result: verified {verified}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!("result: failed {reason}");
            ExitCode::FAILURE
        }
    }
}
