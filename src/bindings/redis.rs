//! Redis binding store (placeholder)
