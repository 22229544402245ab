//! Feedback sources for ILF (ilf-method.md §1.2, step 2): people through an annotation web app,
//! the failing program's own verdict, and a language model. Every source writes
//! the paper's annotation records ([`annotations::AnnotationRecord`]).
//!
//! - [`store`]: the SQLite annotation store (tasks, failing programs, feedback, refinements,
//!   annotators, reviews).
//! - [`annotations`]: the paper's JSONL schema, import/export, edit distances.
//! - [`failures`]: failing programs read from `ilf eval`'s `results.jsonl`.
//! - [`execution`]: execution feedback, the verdict said in words.
//! - [`model`]: model-written feedback through `ilf-lm`'s `Generator`, with a documented
//!   few-shot prompt.
//! - [`app`]: the axum web app behind `ilf annotate`.

pub mod annotations;
pub mod app;
pub mod execution;
pub mod failures;
pub mod model;
pub mod store;
