//! Event parsing (`adrec::events::parse_event`) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| adrec::fuzzing::parse_event_bytes(data));
