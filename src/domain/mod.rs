//! Domain words and rules from `seeds/`, free of I/O.

pub mod roles;
