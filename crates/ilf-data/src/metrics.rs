//! pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code") and the summary
//! every evaluation writes to `summary.json`.
//!
//! For a task with `n` samples of which `c` pass, the unbiased estimator of pass@k is
//! `1 - C(n-c, k) / C(n, k)`, computed as `1 - prod_{i=n-c+1}^{n} (1 - k/i)` for numerical
//! stability (the paper's code does the same). The benchmark score is its mean over tasks. The
//! paper uses n = 30 and k ∈ {1, 10}.
//!
//! Confidence intervals are 95% percentile bootstrap intervals over tasks: draw as many tasks as
//! there are, with replacement, [`Bootstrap::resamples`] times (2000 by default) from a seeded
//! generator, take the mean of each draw, and report the 2.5% and 97.5% quantiles of those means
//! (linear interpolation between order statistics, numpy's default). Every metric uses the same
//! draws (the generator restarts from the seed), so intervals of different k are comparable.
//! Samples within a task are not resampled: the interval covers the choice of tasks only.

use crate::{records::ResultRow, verdict::Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Unbiased pass@k for one task with `n` samples and `c` passing; `None` when `k` is 0, `k > n`
/// or `c > n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let fail_all: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Some(1.0 - fail_all)
}

/// Samples and passing samples of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    pub task_id: u32,
    pub n: usize,
    pub c: usize,
}

/// Groups result rows by task (sorted by task id).
pub fn task_counts(rows: &[ResultRow]) -> Vec<TaskCounts> {
    let mut by_task: BTreeMap<u32, TaskCounts> = BTreeMap::new();
    for row in rows {
        let counts = by_task.entry(row.task_id).or_insert(TaskCounts {
            task_id: row.task_id,
            n: 0,
            c: 0,
        });
        counts.n += 1;
        counts.c += usize::from(row.passed);
    }
    by_task.into_values().collect()
}

/// How confidence intervals are computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub resamples: usize,
    pub seed: u64,
    /// Coverage of the interval, e.g. 0.95.
    pub confidence: f64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 2000,
            seed: 0,
            confidence: 0.95,
        }
    }
}

/// A confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The percentile bootstrap interval of the mean of `values` (see the module doc); `None` for no
/// values or no resamples.
pub fn bootstrap_mean_ci(values: &[f64], bootstrap: &Bootstrap) -> Option<Interval> {
    if values.is_empty() || bootstrap.resamples == 0 {
        return None;
    }
    let mut rng = SplitMix64(bootstrap.seed);
    let mut means: Vec<f64> = (0..bootstrap.resamples)
        .map(|_| {
            let sum: f64 = (0..values.len())
                .map(|_| values[rng.below(values.len())])
                .sum();
            sum / values.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - bootstrap.confidence).clamp(0.0, 1.0);
    Some(Interval {
        low: quantile(&means, alpha / 2.0),
        high: quantile(&means, 1.0 - alpha / 2.0),
    })
}

/// The `q` quantile of sorted, non-empty `sorted`, interpolating linearly.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

/// SplitMix64 (Steele et al. 2014): tiny, seedable, and the same on every platform and version,
/// so a `summary.json` can be reproduced exactly from its seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-40 for our sizes).
    fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
}

/// pass@k over a set of tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassAtK {
    pub k: usize,
    /// Mean over the tasks with at least `k` samples; `None` if there are none.
    pub value: Option<f64>,
    pub ci: Option<Interval>,
    /// How many tasks the mean is over.
    pub tasks: usize,
    /// Tasks left out because they have fewer than `k` samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks_with_too_few_samples: Vec<u32>,
}

/// What an evaluation reports (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub tasks: usize,
    pub samples: usize,
    pub pass_at_k: Vec<PassAtK>,
    /// Share of tasks with at least one passing sample (the paper's "1+ Correct").
    pub one_plus_correct: Option<f64>,
    pub one_plus_correct_ci: Option<Interval>,
    /// Samples by verdict status.
    pub status_counts: BTreeMap<Status, usize>,
    pub bootstrap: Bootstrap,
    /// Things a reader must know, e.g. that some tasks were left out of a pass@k.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Summary {
    /// The summary of sandbox results, for each `k` in `ks`.
    pub fn from_results(rows: &[ResultRow], ks: &[usize], bootstrap: &Bootstrap) -> Summary {
        let mut status_counts = BTreeMap::new();
        for row in rows {
            *status_counts.entry(row.outcome.status).or_insert(0) += 1;
        }
        Summary::from_counts(&task_counts(rows), ks, status_counts, bootstrap)
    }

    /// The summary of per-task counts. A task with fewer than `k` samples is left out of pass@k
    /// (and named in `warnings`) rather than mixed in with a different estimator.
    pub fn from_counts(
        counts: &[TaskCounts],
        ks: &[usize],
        status_counts: BTreeMap<Status, usize>,
        bootstrap: &Bootstrap,
    ) -> Summary {
        let mut warnings = Vec::new();
        let pass_at_k = ks
            .iter()
            .map(|&k| {
                let (values, too_few): (Vec<&TaskCounts>, Vec<&TaskCounts>) =
                    counts.iter().partition(|t| k > 0 && t.n >= k);
                let values: Vec<f64> = values
                    .iter()
                    .filter_map(|t| pass_at_k(t.n, t.c, k))
                    .collect();
                let too_few: Vec<u32> = too_few.iter().map(|t| t.task_id).collect();
                if !too_few.is_empty() {
                    warnings.push(format!(
                        "pass@{k}: {} of {} tasks have fewer than {k} samples and are left out",
                        too_few.len(),
                        counts.len()
                    ));
                }
                PassAtK {
                    k,
                    value: mean(&values),
                    ci: bootstrap_mean_ci(&values, bootstrap),
                    tasks: values.len(),
                    tasks_with_too_few_samples: too_few,
                }
            })
            .collect();
        let solved: Vec<f64> = counts
            .iter()
            .map(|t| if t.c > 0 { 1.0 } else { 0.0 })
            .collect();
        Summary {
            tasks: counts.len(),
            samples: counts.iter().map(|t| t.n).sum(),
            pass_at_k,
            one_plus_correct: mean(&solved),
            one_plus_correct_ci: bootstrap_mean_ci(&solved, bootstrap),
            status_counts,
            bootstrap: *bootstrap,
            warnings,
        }
    }

    /// The pass@k entry for `k`, if it was requested.
    pub fn pass_at(&self, k: usize) -> Option<&PassAtK> {
        self.pass_at_k.iter().find(|p| p.k == k)
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(n: u64, k: u64) -> f64 {
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }

    #[test]
    fn pass_at_k_matches_hand_computed_values() {
        assert!((pass_at_k(30, 3, 1).unwrap() - 0.1).abs() < 1e-12);
        // C(27,10) = 8436285, C(30,10) = 30045015.
        let expected = 1.0 - 8_436_285.0 / 30_045_015.0;
        assert!((pass_at_k(30, 3, 10).unwrap() - expected).abs() < 1e-12);
        assert!((choose(27, 10) - 8_436_285.0).abs() < 1e-6);
        for c in 0..=30 {
            let exact = 1.0 - choose(30 - c, 10) / choose(30, 10);
            assert!(
                (pass_at_k(30, c as usize, 10).unwrap() - exact).abs() < 1e-9,
                "c={c}"
            );
        }
        assert_eq!(pass_at_k(30, 0, 10), Some(0.0));
        assert_eq!(pass_at_k(30, 30, 1), Some(1.0));
        assert_eq!(pass_at_k(30, 25, 10), Some(1.0));
        assert_eq!(pass_at_k(5, 1, 10), None);
        assert_eq!(pass_at_k(5, 6, 1), None);
        assert_eq!(pass_at_k(5, 1, 0), None);
    }

    #[test]
    fn summary_leaves_out_tasks_with_too_few_samples() {
        let counts = [
            TaskCounts {
                task_id: 11,
                n: 30,
                c: 3,
            },
            TaskCounts {
                task_id: 12,
                n: 30,
                c: 0,
            },
            TaskCounts {
                task_id: 13,
                n: 5,
                c: 5,
            },
        ];
        let statuses = BTreeMap::from([(Status::Passed, 8), (Status::Failed, 57)]);
        let summary = Summary::from_counts(&counts, &[1, 10], statuses, &Bootstrap::default());
        assert_eq!(summary.tasks, 3);
        assert_eq!(summary.samples, 65);
        let p1 = summary.pass_at(1).unwrap();
        assert!((p1.value.unwrap() - (0.1 + 0.0 + 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(p1.tasks, 3);
        let p10 = summary.pass_at(10).unwrap();
        assert_eq!(p10.tasks, 2);
        assert_eq!(p10.tasks_with_too_few_samples, vec![13]);
        assert!((p10.value.unwrap() - pass_at_k(30, 3, 10).unwrap() / 2.0).abs() < 1e-12);
        assert_eq!(summary.warnings.len(), 1);
        assert!(
            summary.warnings[0].contains("pass@10: 1 of 3 tasks"),
            "{:?}",
            summary.warnings
        );
        assert!((summary.one_plus_correct.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["status_counts"]["failed"], 57);
        let back: Summary = serde_json::from_value(json).unwrap();
        assert_eq!(back, summary);
    }

    #[test]
    fn bootstrap_is_seeded_and_sane() {
        let values: Vec<f64> = (0..100)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let b = Bootstrap::default();
        let ci = bootstrap_mean_ci(&values, &b).unwrap();
        assert_eq!(Some(ci), bootstrap_mean_ci(&values, &b));
        // The normal approximation gives 0.25 ± 1.96 * sqrt(0.25 * 0.75 / 100) = [0.165, 0.335].
        assert!(ci.low < 0.25 && ci.high > 0.25);
        assert!(
            (ci.low - 0.165).abs() < 0.03 && (ci.high - 0.335).abs() < 0.03,
            "{ci:?}"
        );
        let other = bootstrap_mean_ci(&values, &Bootstrap { seed: 1, ..b }).unwrap();
        assert_ne!(other, ci);
        let constant = bootstrap_mean_ci(&[0.5; 10], &b).unwrap();
        assert_eq!(
            constant,
            Interval {
                low: 0.5,
                high: 0.5
            }
        );
        let two = bootstrap_mean_ci(&[0.0, 1.0], &b).unwrap();
        assert_eq!(
            two,
            Interval {
                low: 0.0,
                high: 1.0
            }
        );
        assert_eq!(bootstrap_mean_ci(&[], &b), None);
    }

    #[test]
    fn results_are_grouped_by_task() {
        use crate::verdict::ProgramOutcome;
        let row = |task_id, status| {
            let outcome = ProgramOutcome {
                status,
                tests: vec![],
                error: None,
                detail: None,
                duration_s: 0.1,
            };
            ResultRow::new(task_id, Default::default(), String::new(), outcome)
        };
        let rows = [
            row(12, Status::Passed),
            row(11, Status::Timeout),
            row(12, Status::Failed),
        ];
        assert_eq!(
            task_counts(&rows),
            vec![
                TaskCounts {
                    task_id: 11,
                    n: 1,
                    c: 0
                },
                TaskCounts {
                    task_id: 12,
                    n: 2,
                    c: 1
                }
            ]
        );
        let summary = Summary::from_results(&rows, &[1], &Bootstrap::default());
        assert_eq!(summary.status_counts[&Status::Timeout], 1);
        assert!((summary.pass_at(1).unwrap().value.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(summary.one_plus_correct, Some(0.5));
    }
}
