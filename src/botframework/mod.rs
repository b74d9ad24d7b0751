//! The Bot Framework protocol: activity types, inbound JWT validation, the outbound token and the Connector
//! REST client. Nothing here knows about FastTrack; the domain lives in `commands`, `cards` and `turn`.

pub mod activity;
pub mod auth;
pub mod connector;
pub mod retry;
pub mod token;
