//! Supervised fine-tuning: masked loss, AdamW, LoRA, checkpoints, exports.
