//! Chat text with mentions: stripping the bot's mention, lexing `key:value` / quotes, parsing every
//! command, and the error message a user would read must never panic.
#![no_main]

use fieldbot::commands::{Mention, parse, strip_bot_mentions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line names a mention the text may contain, like Teams' entities.
    let (entity, body) = text.split_once('\n').unwrap_or(("fieldbot", text));
    let mentions = vec![
        Mention { id: "28:bot".into(), name: entity.into(), text: format!("<at>{entity}</at>") },
        Mention { id: "29:user".into(), name: "Dana".into(), text: "<at>Dana</at>".into() },
    ];
    let cleaned = strip_bot_mentions(body, &mentions, "28:bot");
    match parse(&cleaned, &mentions) {
        Ok(_) => {}
        Err(e) => {
            let _ = e.user_message();
        }
    }
});
