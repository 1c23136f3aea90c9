//! Matching: from embeddings to named keypoints. [`templates`] says what each
//! correspondence set looks like in embedding space (built once from annotated models,
//! stored in the model file); [`matcher`] finds each template on a new cloud and decides
//! which matches to trust.

pub mod matcher;
pub mod templates;

pub use matcher::{format_table, KeypointMatch, MatchParams, Matcher};
pub use templates::{PairStat, Template, TemplateSet};
