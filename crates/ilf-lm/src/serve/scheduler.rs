//! Continuous batching: one thread owns the model and decodes every active sequence, admitting
//! new requests between decode steps and retiring finished or abandoned ones.
//!
//! Each admission wave becomes a *cohort*: its prompts are prefilled one by one (a prompt's `n`
//! samples share its prefill, as in [`crate::sampling::LocalGenerator`]) and joined into one
//! batched [`KvCache`] with [`KvCache::from_prefixes`]. A decode step runs one batched forward per
//! cohort. Cohorts cannot be merged because `KvCache` offers no way to join two padded multi-row
//! caches, so new work waits while `max_cohorts` are running; within a cohort, finished rows are
//! dropped with [`KvCache::select_rows`] at once, so the batch never decodes dead rows.
//!
//! Reproducibility: sample `j` of a request with seed `s` draws from [`sample_rng`]`(s, j)` and
//! picks tokens with [`sample_token`], exactly as the offline sampler does, so its text does not
//! depend on the other requests in flight.

use crate::models::{KvCache, Model};
use crate::sampling::{sample_rng, sample_token, FinishReason, SamplingParams};
use anyhow::{Context, Result};
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// One prompt and the samples to draw from it, as the scheduler sees it (already tokenized and
/// validated by the HTTP layer).
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub seed: u64,
    /// Choice `choice_base + i` of the HTTP request draws from the random stream of sample
    /// `samples[i]`.
    pub samples: Vec<usize>,
    pub choice_base: usize,
    pub events: UnboundedSender<Event>,
    /// Set by the HTTP layer when a choice needs no more tokens (a stop string matched); indexed
    /// by the request's choice index.
    pub cancel: Arc<Vec<AtomicBool>>,
}

/// What the scheduler reports about a job, one event per generated token.
#[derive(Debug, Clone)]
pub enum Event {
    /// Choice `choice` produced `token`; `finish` is set on its last token. An end-of-sequence
    /// token is reported with `finish = Some(Eos)` and is not part of the text.
    Token {
        choice: usize,
        token: u32,
        finish: Option<FinishReason>,
    },
    /// The job failed (a tensor error); the scheduler keeps serving others.
    Failed(String),
}

/// Scheduler settings.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Sequences decoded together at most (all cohorts).
    pub max_batch: usize,
    /// Cohorts decoded side by side at most (see the module doc).
    pub max_cohorts: usize,
}

struct Row {
    job: Arc<Job>,
    choice: usize,
    rng: ChaCha8Rng,
    last: u32,
    generated: usize,
    limit: usize,
}

impl Row {
    fn abandoned(&self) -> bool {
        self.job.events.is_closed() || self.job.cancel[self.choice].load(Ordering::Relaxed)
    }
}

struct Cohort {
    cache: KvCache,
    rows: Vec<Row>,
}

/// The jobs received but not yet admitted, and whether more can arrive.
struct Queue {
    jobs: Receiver<Job>,
    waiting: VecDeque<Job>,
    open: bool,
}

impl Queue {
    /// Moves every job already sent into `waiting`, dropping those whose client left.
    fn drain(&mut self) {
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.open = false;
                    break;
                }
            }
        }
        self.waiting.retain(|j| !j.events.is_closed());
    }

    fn waiting_rows(&self) -> usize {
        self.waiting.iter().map(|j| j.samples.len()).sum()
    }
}

/// Runs until every sender of `jobs` is gone and the work in flight is done.
///
/// Admission policy: a decode step costs about `c0 + c1 * rows` per cohort, so a second cohort
/// of `k` rows beside `m` active ones raises throughput only when `k >= m`; a new cohort starts
/// when nothing runs, or when the waiting rows are at least as many as the active rows per
/// running cohort. Jobs that arrive while a wave is being prefilled join that wave.
pub fn run(model: Model, eos: Vec<u32>, config: SchedulerConfig, jobs: Receiver<Job>) {
    let mut queue = Queue {
        jobs,
        waiting: VecDeque::new(),
        open: true,
    };
    let mut cohorts: Vec<Cohort> = Vec::new();
    let max_batch = config.max_batch.max(1);
    loop {
        if cohorts.is_empty() && queue.waiting.is_empty() {
            if !queue.open {
                return;
            }
            match queue.jobs.recv() {
                Ok(job) => queue.waiting.push_back(job),
                Err(_) => return,
            }
        }
        queue.drain();
        let active: usize = cohorts.iter().map(|c| c.rows.len()).sum();
        let worth_it = cohorts.is_empty()
            || (cohorts.len() < config.max_cohorts.max(1)
                && active < max_batch
                && queue.waiting_rows() * cohorts.len() >= active);
        if worth_it && !queue.waiting.is_empty() {
            if let Some(c) = admit(&model, &eos, &mut queue, max_batch - active.min(max_batch)) {
                cohorts.push(c);
            }
        }
        for cohort in &mut cohorts {
            if let Err(e) = step(&model, &eos, cohort) {
                let msg = format!("decoding failed: {e:#}");
                for row in cohort.rows.drain(..) {
                    let _ = row.job.events.send(Event::Failed(msg.clone()));
                }
            }
        }
        cohorts.retain(|c| !c.rows.is_empty());
    }
}

/// Prefills waiting jobs (up to `room` rows; a job larger than the whole batch runs alone) and
/// draws each sample's first token; `None` when nothing is left to decode.
fn admit(model: &Model, eos: &[u32], queue: &mut Queue, room: usize) -> Option<Cohort> {
    let mut prefills = Vec::new();
    let mut rows = Vec::new();
    let mut taken = 0;
    while let Some(front) = queue.waiting.front() {
        let n = front.samples.len();
        if taken + n > room && taken > 0 {
            break;
        }
        taken += n;
        let job = queue.waiting.pop_front().expect("front exists");
        let job = Arc::new(job);
        match prefill(model, &job.prompt) {
            Ok((cache, logits)) => {
                let ctx = model.config().max_position_embeddings;
                let limit = job.params.max_tokens.min(ctx - job.prompt.len()).max(1);
                let mut copies = 0;
                for (choice, &sample) in job.samples.iter().enumerate() {
                    let mut rng = sample_rng(job.seed, sample);
                    let token = sample_token(&logits, &job.params, &mut rng);
                    let row = Row {
                        job: job.clone(),
                        choice: job.choice_base + choice,
                        rng,
                        last: token,
                        generated: 1,
                        limit,
                    };
                    if report(&row, eos) {
                        rows.push(row);
                        copies += 1;
                    }
                }
                if copies > 0 {
                    prefills.push((cache, copies));
                }
            }
            Err(e) => {
                let _ = job
                    .events
                    .send(Event::Failed(format!("prefill failed: {e:#}")));
            }
        }
    }
    if rows.is_empty() {
        return None;
    }
    let longest = prefills.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let max_new = rows.iter().map(|r| r.limit).max().unwrap_or(0);
    let parts: Vec<(&KvCache, usize)> = prefills.iter().map(|(c, n)| (c, *n)).collect();
    match KvCache::from_prefixes(&parts, longest + max_new) {
        Ok(cache) => Some(Cohort { cache, rows }),
        Err(e) => {
            for row in rows {
                let _ = row
                    .job
                    .events
                    .send(Event::Failed(format!("building the batch cache: {e}")));
            }
            None
        }
    }
}

fn prefill(model: &Model, ids: &[u32]) -> Result<(KvCache, Vec<f32>)> {
    let device = model.device();
    let mut cache = KvCache::new(model.config(), 1, ids.len(), device)?;
    let input = Tensor::new(ids, device)?.unsqueeze(0)?;
    let logits = model
        .forward_with_cache(&input, &mut cache)
        .context("prefilling a prompt")?;
    Ok((cache, logits.squeeze(0)?.to_vec1::<f32>()?))
}

/// Sends `row`'s latest token; `true` while the row needs more tokens.
fn report(row: &Row, eos: &[u32]) -> bool {
    let finish = if eos.contains(&row.last) {
        Some(FinishReason::Eos)
    } else if row.generated >= row.limit {
        Some(FinishReason::Length)
    } else {
        None
    };
    let sent = row.job.events.send(Event::Token {
        choice: row.choice,
        token: row.last,
        finish,
    });
    sent.is_ok() && finish.is_none()
}

/// Drops abandoned rows, then decodes one token for every other row of `cohort`.
fn step(model: &Model, eos: &[u32], cohort: &mut Cohort) -> Result<()> {
    let keep: Vec<usize> = (0..cohort.rows.len())
        .filter(|&i| !cohort.rows[i].abandoned())
        .collect();
    retain_rows(cohort, &keep)?;
    if cohort.rows.is_empty() {
        return Ok(());
    }
    let last: Vec<u32> = cohort.rows.iter().map(|r| r.last).collect();
    let input = Tensor::from_vec(last, (cohort.rows.len(), 1), model.device())?;
    let logits = model
        .forward_with_cache(&input, &mut cohort.cache)?
        .to_vec2::<f32>()?;
    cohort
        .rows
        .par_iter_mut()
        .zip(logits.par_iter())
        .for_each(|(row, l)| {
            row.last = sample_token(l, &row.job.params, &mut row.rng);
            row.generated += 1;
        });
    let keep: Vec<usize> = (0..cohort.rows.len())
        .filter(|&i| report(&cohort.rows[i], eos))
        .collect();
    retain_rows(cohort, &keep)
}

fn retain_rows(cohort: &mut Cohort, keep: &[usize]) -> Result<()> {
    if keep.len() == cohort.rows.len() {
        return Ok(());
    }
    if !keep.is_empty() {
        cohort.cache.select_rows(keep)?;
    }
    let mut old: Vec<Option<Row>> = cohort.rows.drain(..).map(Some).collect();
    cohort.rows = keep
        .iter()
        .map(|&i| old[i].take().expect("each kept row once"))
        .collect();
    Ok(())
}
