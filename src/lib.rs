//! fieldbot: a Microsoft Teams bot for FastTrack Managers working with the Field.
//!
//! Reading order, from the wire inwards:
//! - [`http`] receives `POST /api/messages` and serves the operator endpoints;
//! - [`botframework`] holds the protocol: activity types, JWT validation, the Connector client;
//! - [`turn`] decides what one activity changes and which effects it causes (no I/O);
//! - [`commands`] parses chat text into commands; [`cards`] builds the Adaptive Cards; [`domain`] holds the
//!   FastTrack vocabulary (roles, …);
//! - [`store`] persists state behind one trait (SQLite or PostgreSQL);
//! - [`jobs`] is the durable effect queue and its worker;
//! - [`config`], [`telemetry`], [`clock`] and [`app`] wire it together; [`local_connector`] is a
//!   developer's stand-in for the Bot Connector.

pub mod app;
pub mod botframework;
pub mod cards;
pub mod clock;
pub mod commands;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod graph;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod leads;
pub mod local_connector;
pub mod package;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod turn;
