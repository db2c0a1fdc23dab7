#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crdt_core_fuzz::fuzz("frame", data));
