//! Arbitrary sequences of reports into the CTAPHID server.
//!
//! Input: a sequence of steps, each one control byte followed by up to 64 report bytes.
//! Control byte: bits 0-3 advance the clock by that many 50 ms; bit 4 answers the pending
//! request; bit 5 makes that answer long; bit 6 calls `poll`; bit 7 truncates the report.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pocketkey_core::hid::{HidOutput, HidServer, Packet, MAX_CHANNELS, REPORT_LEN};

fuzz_target!(|data: &[u8]| {
    // Channel ids 1, 2, 3… so the fuzzer can reach allocated channels.
    let mut server = HidServer::with_first_cid((1, 0, 0), 1);
    let mut now = Instant::now();
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        let take = tail.len().min(REPORT_LEN);
        let (report, tail) = tail.split_at(take);
        rest = tail;

        now += Duration::from_millis(50 * u64::from(control & 0x0f));
        let report = if control & 0x80 != 0 {
            let keep = usize::from(report.first().copied().unwrap_or(0)) % REPORT_LEN;
            &report[..keep.min(report.len())]
        } else {
            report
        };
        for output in server.handle_packet(report, now) {
            if let HidOutput::Send(sent) = output {
                assert!(Packet::parse(&sent).is_ok());
            }
        }
        if control & 0x40 != 0 {
            for output in server.poll(now) {
                assert!(matches!(output, HidOutput::Send(_)));
            }
        }
        if control & 0x10 != 0 {
            if let Some((cid, kind)) = server.pending_request() {
                let response: Vec<u8> = if control & 0x20 != 0 {
                    report.iter().copied().cycle().take(8000).collect()
                } else {
                    report.to_vec()
                };
                let reports = server.finish(cid, kind, &response);
                assert!(!reports.is_empty());
                assert!(server.pending_request().is_none());
            }
        }
        assert!(server.channel_count() <= MAX_CHANNELS);
    }
});
