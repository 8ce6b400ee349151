//! Test code of `tests/hostile_input.rs`.

pub mod drivers;
