//! Image decode + preprocess (`adrec::embed::preprocess::prepare`) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| adrec::fuzzing::preprocess_image_bytes(data));
