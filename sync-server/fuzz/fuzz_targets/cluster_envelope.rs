#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sync_server_fuzz::fuzz("cluster_envelope", data));
