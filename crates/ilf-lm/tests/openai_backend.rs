//! The OpenAI client backend against real `ilf serve` replicas on 127.0.0.1 (tiny random model,
//! tokenizer trained in the test): the same samples as the local backend for the same seeds,
//! whichever way `n` is sent, and a run that survives a replica killed mid-run.

use ilf_lm::openai::{FanOut, OpenAiConfig, OpenAiGenerator};
use ilf_lm::sampling::{
    FinishReason, GenRequest, Generation, Generator, LocalGenerator, SamplingParams,
};
use ilf_lm::serve::{bind, Engine, ServeConfig, Server};

fn replica() -> Server {
    let config = ServeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        max_batch: 8,
        ..Default::default()
    };
    bind(Engine::tiny(7).unwrap(), &config).unwrap()
}

fn client(servers: &[&Server], fan_out: FanOut) -> OpenAiGenerator {
    OpenAiGenerator::new(OpenAiConfig {
        base_urls: servers.iter().map(|s| s.base_url()).collect(),
        model: "tiny".into(),
        concurrency: 4,
        retries: 4,
        fan_out,
        api_key: None,
    })
    .unwrap()
}

const PROMPTS: [&str; 4] = [
    "def add(a, b):\n    return",
    "import os\n\nclass Config:\n    def __init__(self):\n",
    "for i in range(10):\n",
    "# Return the largest element\ndef largest(xs):\n",
];

fn requests(max_tokens: usize) -> Vec<GenRequest> {
    let params = |t: f64| SamplingParams {
        temperature: t,
        top_p: 0.9,
        top_k: 40,
        max_tokens,
    };
    let mut reqs: Vec<GenRequest> = PROMPTS
        .iter()
        .enumerate()
        .map(|(i, p)| GenRequest::new(*p, 3, 100 + i as u64, params(0.8)))
        .collect();
    reqs.push(GenRequest::new(PROMPTS[0], 1, 3, params(0.0)));
    // A resumed request: only some sample indices, which the client must fan out.
    reqs.push(GenRequest {
        prompt: PROMPTS[2].into(),
        samples: vec![1, 4],
        seed: 55,
        params: params(1.0),
    });
    reqs
}

/// Cuts before the first line that starts without indentation after some text: a caller's
/// stop rule (like MBPP's end of function), applied by the client as text arrives.
fn blank_line(s: &str) -> Option<usize> {
    s.match_indices('\n')
        .map(|(i, _)| i)
        .find(|&i| i > 0 && s[i + 1..].starts_with(|c: char| !c.is_whitespace()))
}

/// Asserts the client's samples are the local ones: same text and finish reason; the same token
/// count, except that a client-side stop may see a few more tokens (the server holds back an
/// incomplete UTF-8 character, so the stop rule can fire a token or two later than offline).
fn assert_same(got: &[Vec<Generation>], expected: &[Vec<Generation>]) {
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().flatten().zip(expected.iter().flatten()) {
        let key = |x: &Generation| (x.request, x.sample, x.completion.clone(), x.finish_reason);
        assert_eq!(key(g), key(e));
        if e.finish_reason == FinishReason::Stop {
            assert!(g.tokens >= e.tokens, "{g:?} vs {e:?}");
        } else {
            assert_eq!(g.tokens, e.tokens, "{g:?} vs {e:?}");
        }
    }
    assert_eq!(
        got.iter().map(Vec::len).collect::<Vec<_>>(),
        expected.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

fn local(reqs: &[GenRequest]) -> Vec<Vec<Generation>> {
    let engine = Engine::tiny(7).unwrap();
    let g = LocalGenerator {
        model: &engine.model,
        tokenizer: &engine.tokenizer,
        eos_token_ids: engine.eos_token_ids.clone(),
        batch_size: 5,
    };
    g.generate_all(reqs, &blank_line).unwrap()
}

#[test]
fn client_gives_the_local_backends_samples() {
    let reqs = requests(40);
    let expected = local(&reqs);
    assert!(
        expected
            .iter()
            .flatten()
            .any(|g| g.finish_reason == FinishReason::Stop),
        "the test should exercise the stop rule"
    );
    let srv = replica();
    for fan_out in [FanOut::Auto, FanOut::Always] {
        let got = client(&[&srv], fan_out)
            .generate_all(&reqs, &blank_line)
            .unwrap();
        assert_same(&got, &expected);
    }
}

#[test]
fn a_replica_killed_mid_run_is_retried_on_the_other() {
    let reqs: Vec<GenRequest> = (0..6).flat_map(|_| requests(120)).collect();
    let expected = local(&reqs);
    let a = replica();
    let b = replica();
    let g = client(&[&a, &b], FanOut::Auto);
    let mut a = Some(a);
    let mut got: Vec<Vec<Generation>> = reqs.iter().map(|_| Vec::new()).collect();
    let mut done = 0;
    g.generate(&reqs, &blank_line, &mut |gen| {
        done += 1;
        if done == 3 {
            // Round-robin has requests in flight on both replicas by now.
            a.take().unwrap().shutdown()?;
        }
        got[gen.request].push(gen);
        Ok(())
    })
    .unwrap();
    assert!(a.is_none(), "the replica was killed during the run");
    assert!(
        g.retried() > 0,
        "requests in flight on the killed replica were retried"
    );
    for (req, gens) in reqs.iter().zip(got.iter_mut()) {
        gens.sort_by_key(|g| req.samples.iter().position(|&s| s == g.sample));
    }
    assert_same(&got, &expected);
}

#[test]
fn a_dead_server_fails_with_the_url_and_request() {
    let srv = replica();
    let url = srv.base_url();
    srv.shutdown().unwrap();
    let g = OpenAiGenerator::new(OpenAiConfig {
        base_urls: vec![url.clone()],
        model: "tiny".into(),
        concurrency: 1,
        retries: 1,
        fan_out: FanOut::Auto,
        api_key: None,
    })
    .unwrap();
    let e = g
        .generate_all(&requests(4)[..1], &ilf_lm::sampling::NoStop)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&url) && e.contains("request 0"), "{e}");
    assert!(e.contains("2 attempts"), "{e}");
}

#[test]
fn a_bad_request_is_not_retried_and_reports_the_servers_message() {
    let srv = replica();
    let g = OpenAiGenerator::new(OpenAiConfig {
        base_urls: vec![srv.base_url()],
        model: "other-model".into(),
        concurrency: 1,
        retries: 5,
        fan_out: FanOut::Auto,
        api_key: None,
    })
    .unwrap();
    let e = g
        .generate_all(&requests(4)[..1], &ilf_lm::sampling::NoStop)
        .unwrap_err()
        .to_string();
    assert!(e.contains("404") && e.contains("does not exist"), "{e}");
}

/// A proxy in front of `ilf serve` that drops `n` (always one choice), as some OpenAI-compatible
/// servers do; returns its base URL and keeps running until the process ends.
fn n_ignoring_proxy(upstream: String) -> String {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::response::IntoResponse;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            async fn forward(State(upstream): State<String>, body: Bytes) -> impl IntoResponse {
                let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                v["n"] = serde_json::json!(1);
                let resp = reqwest::Client::new()
                    .post(format!("{upstream}/completions"))
                    .json(&v)
                    .send()
                    .await
                    .unwrap();
                let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
                let text = resp.bytes().await.unwrap();
                (
                    status,
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    text,
                )
            }
            let app = axum::Router::new()
                .route("/v1/completions", axum::routing::post(forward))
                .with_state(upstream);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}/v1")
}

#[test]
fn a_server_that_ignores_n_gets_one_request_per_sample() {
    let reqs = requests(24);
    let expected = local(&reqs);
    let srv = replica();
    let g = OpenAiGenerator::new(OpenAiConfig {
        base_urls: vec![n_ignoring_proxy(srv.base_url())],
        model: "tiny".into(),
        concurrency: 4,
        retries: 0,
        fan_out: FanOut::Auto,
        api_key: None,
    })
    .unwrap();
    let got = g.generate_all(&reqs, &blank_line).unwrap();
    assert_same(&got, &expected);
    // The second run fans out from the start (the client remembers) and must agree too.
    let again = g.generate_all(&reqs, &blank_line).unwrap();
    assert_same(&again, &expected);
}
