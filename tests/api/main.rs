//! Integration tests: one binary (links once). Each test starts the real application against local fakes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod auth;
mod commands;
mod dashboard;
mod deploy;
mod doctor;
mod engagement;
mod fta;
mod helpers;
mod install;
mod invite;
mod jobs;
mod logs;
mod operator_api;
mod prep;
mod replicas;
mod soak;
mod store_contract;
mod sync;
mod throttle;
mod webhook;
