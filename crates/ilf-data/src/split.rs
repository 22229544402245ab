//! Task-id ranges: the paper's re-split of MBPP (Chen et al. 2023, §3 "Dataset") and MBPP's own.
//!
//! | name | ids | use |
//! | --- | --- | --- |
//! | `prompt` | 1–10 | MBPP's few-shot prompt tasks; unused by the paper |
//! | `test` | 11–110 | MBPP_Test: final pass@k |
//! | `refine` | 111–310 | MBPP_Refine: trains the refiner |
//! | `train` | 311–974 | MBPP_Train: refinements that train the policy |
//! | `all` | 1–974 | everything |
//! | `mbpp-prompt` | 1–10 | MBPP's own prompt split |
//! | `mbpp-test` | 11–510 | MBPP's own test split |
//! | `mbpp-validation` | 511–600 | MBPP's own validation split |
//! | `mbpp-train` | 601–974 | MBPP's own train split |

use crate::error::DataError;
use std::ops::RangeInclusive;

/// A named, contiguous range of MBPP task ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Prompt,
    Test,
    Refine,
    Train,
    All,
    MbppPrompt,
    MbppTest,
    MbppValidation,
    MbppTrain,
}

impl Split {
    /// Every split, in the order of the table above.
    pub const ALL: [Split; 9] = [
        Split::Prompt,
        Split::Test,
        Split::Refine,
        Split::Train,
        Split::All,
        Split::MbppPrompt,
        Split::MbppTest,
        Split::MbppValidation,
        Split::MbppTrain,
    ];

    /// The task ids of the split.
    pub fn ids(&self) -> RangeInclusive<u32> {
        match self {
            Split::Prompt | Split::MbppPrompt => 1..=10,
            Split::Test => 11..=110,
            Split::Refine => 111..=310,
            Split::Train => 311..=974,
            Split::All => 1..=974,
            Split::MbppTest => 11..=510,
            Split::MbppValidation => 511..=600,
            Split::MbppTrain => 601..=974,
        }
    }

    /// The name used on the command line and in files.
    pub fn name(&self) -> &'static str {
        match self {
            Split::Prompt => "prompt",
            Split::Test => "test",
            Split::Refine => "refine",
            Split::Train => "train",
            Split::All => "all",
            Split::MbppPrompt => "mbpp-prompt",
            Split::MbppTest => "mbpp-test",
            Split::MbppValidation => "mbpp-validation",
            Split::MbppTrain => "mbpp-train",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Split {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Split::ALL
            .into_iter()
            .find(|split| split.name() == s)
            .ok_or_else(|| DataError::UnknownSplit {
                name: s.to_string(),
                expected: Split::ALL.map(|split| split.name()).join(", "),
            })
    }
}

/// Parses a task-id list such as `11-20,42` (ranges inclusive, whitespace allowed around items)
/// into sorted, deduplicated ids. Ids must be positive; a range must not run backwards.
pub fn parse_task_ids(spec: &str) -> Result<Vec<u32>, DataError> {
    let error = |message: String| DataError::TaskIds {
        spec: spec.to_string(),
        message,
    };
    let number = |text: &str| -> Result<u32, DataError> {
        let text = text.trim();
        match text.parse::<u32>() {
            Ok(0) => Err(error("task ids start at 1".to_string())),
            Ok(n) => Ok(n),
            Err(_) if text.is_empty() => Err(error("empty id".to_string())),
            Err(_) => Err(error(format!("{text:?} is not a task id"))),
        }
    };
    let mut ids = Vec::new();
    for item in spec.split(',') {
        if item.trim().is_empty() {
            return Err(error("empty item".to_string()));
        }
        match item.split_once('-') {
            Some((start, end)) => {
                let (start, end) = (number(start)?, number(end)?);
                if start > end {
                    return Err(error(format!("range {start}-{end} runs backwards")));
                }
                ids.extend(start..=end);
            }
            None => ids.push(number(item)?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ranges_match_the_paper() {
        for split in Split::ALL {
            assert_eq!(split.to_string().parse::<Split>().unwrap(), split);
        }
        assert_eq!("test".parse::<Split>().unwrap().ids(), 11..=110);
        assert_eq!(Split::Refine.ids().count(), 200);
        assert_eq!(Split::Train.ids().count(), 664);
        assert_eq!(Split::MbppTest.ids().count(), 500);
        assert_eq!(Split::MbppValidation.ids().count(), 90);
        assert_eq!(Split::MbppTrain.ids().count(), 374);
        let paper: u32 = [Split::Prompt, Split::Test, Split::Refine, Split::Train]
            .iter()
            .map(|s| s.ids().count() as u32)
            .sum();
        assert_eq!(paper, 974);
    }

    #[test]
    fn unknown_split_lists_the_names() {
        let err = "validation".parse::<Split>().unwrap_err().to_string();
        assert!(
            err.contains("\"validation\"") && err.contains("mbpp-validation"),
            "{err}"
        );
    }

    #[test]
    fn task_ids_sorted_and_deduped() {
        assert_eq!(parse_task_ids("11-13,42").unwrap(), vec![11, 12, 13, 42]);
        assert_eq!(
            parse_task_ids(" 42 , 12-13,11-12 ").unwrap(),
            vec![11, 12, 13, 42]
        );
        assert_eq!(parse_task_ids("7").unwrap(), vec![7]);
    }

    #[test]
    fn task_ids_reject_bad_syntax() {
        for bad in ["", "1,,2", "a", "3-1", "0", "1-", "-4", "1-2-3", "1.5"] {
            let err = parse_task_ids(bad).unwrap_err().to_string();
            assert!(err.contains("bad task ids"), "{bad}: {err}");
        }
        assert!(parse_task_ids("3-1")
            .unwrap_err()
            .to_string()
            .contains("backwards"));
    }
}
