//! Test code of `tests/hostile_input.rs`.

mod app_rows;
pub mod drivers;
mod server_rows;
