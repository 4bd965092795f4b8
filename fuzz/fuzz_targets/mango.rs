#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| couchgate_fuzz::mango(data));
