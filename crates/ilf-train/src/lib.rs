//! Supervised fine-tuning: masked loss, AdamW, LoRA, checkpoints, exports.

pub mod adamw;
pub mod base;
pub mod checkpoint;
pub mod data;
pub mod encode;
pub mod error;
pub mod export;
pub mod job;
pub mod lora;
pub mod loss;
pub mod loss_curve;
pub mod metrics;
pub mod schedule;
pub mod tensor_file;
pub mod trainable;
pub mod trainer;

pub use error::TrainError;
pub use job::{train, TrainJob, TrainReport};
