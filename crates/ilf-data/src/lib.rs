//! MBPP tasks, splits, the paper prompt, completion truncation, JSONL records and pass@k.

pub mod verdict;
