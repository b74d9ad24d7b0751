//! Any body a client can POST to /api/messages: parsing it, and every accessor the webhook then uses,
//! must not panic.
#![no_main]

use fieldbot::botframework::activity::Activity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(activity) = serde_json::from_slice::<Activity>(data) {
        let _ = activity.base_conversation_id();
        let _ = activity.tenant_id();
        let _ = activity.team_id();
        let _ = activity.team_name();
        let _ = activity.selected_channel_id();
        let _ = activity.channel_data_channel_id();
        let _ = activity.event_type();
        let mentions = activity.mentions();
        let _ = activity.includes_bot(&activity.members_added);
        let text = activity.text.as_deref().unwrap_or_default();
        let cleaned = fieldbot::commands::strip_bot_mentions(text, &mentions, activity.bot_id().unwrap_or_default());
        let _ = fieldbot::commands::parse(&cleaned, &mentions);
        if let Some(value) = &activity.value {
            let verb = value.get("verb").and_then(|v| v.as_str()).unwrap_or_default();
            let _ = fieldbot::commands::parse_action(verb, value);
        }
    }
});
