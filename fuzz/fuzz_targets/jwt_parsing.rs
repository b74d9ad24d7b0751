//! The Authorization header of an unauthenticated request: the bearer scheme, the JWT header and the
//! claims segment are parsed before any key is consulted, and must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        let _ = fieldbot::botframework::auth::parse_untrusted(Some(header));
        let _ = fieldbot::botframework::auth::parse_untrusted(Some(&format!("Bearer {header}")));
    }
});
