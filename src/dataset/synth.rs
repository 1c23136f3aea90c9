//! The procedural dataset generator.
