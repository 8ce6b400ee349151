//! Redis call queue (placeholder)
