//! Domain words and rules from `seeds/`, free of I/O.

pub mod engagement;
pub mod fta;
pub mod recurrence;
pub mod roles;
pub mod slots;
