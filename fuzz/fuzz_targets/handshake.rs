#![no_main]
// See mpc_pipe::fuzz::handshake for what this target asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mpc_pipe::fuzz::handshake(data));
