//! Arbitrary bytes as one event read from /dev/uhid: parsing never panics, and an output
//! event's report is accepted only in the two shapes hidraw writers produce.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketkey_desktop::uhid::abi::{output_report, parse, KernelEvent, DATA_MAX};

fuzz_target!(|data: &[u8]| {
    if let Ok(KernelEvent::Output { data: written }) = parse(data) {
        assert!(written.len() <= DATA_MAX);
        if let Some(report) = output_report(&written) {
            assert_eq!(report.len(), 64);
        }
    }
});
