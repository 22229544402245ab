//! `ilf serve` on a tiny random model (tokenizer trained in the test, no download): the official
//! `openai` Python client for completions, chat and streaming; errors in OpenAI's schema; the
//! body-size and concurrency limits; stop strings; the same text as the offline sampler.

use ilf_lm::sampling::{GenRequest, Generator, LocalGenerator, NoStop, SamplingParams};
use ilf_lm::serve::{bind, Engine, ServeConfig, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;

fn server(config: ServeConfig) -> Server {
    let config = ServeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    bind(Engine::tiny(7).unwrap(), &config).unwrap()
}

/// Sends one HTTP/1.1 request and returns the status and the raw body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, tail) = rest.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
}

fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let (status, body) = http(addr, "POST", path, &body.to_string());
    (status, serde_json::from_str(&body).unwrap())
}

/// The `data:` payloads of a server-sent event stream.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

fn assert_openai_error(body: &Value, param: Option<&str>, code: Option<&str>) {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string(), "{body}");
    assert_eq!(e["param"].as_str(), param, "{body}");
    assert_eq!(e["code"].as_str(), code, "{body}");
}

#[test]
fn errors_come_back_in_openai_schema() {
    let srv = server(ServeConfig {
        max_body_bytes: 2048,
        ..Default::default()
    });
    let a = srv.addr();
    let (s, b) = post(
        a,
        "/v1/completions",
        json!({"model": "nope", "prompt": "x"}),
    );
    assert_eq!(s, 404);
    assert_openai_error(&b, Some("model"), Some("model_not_found"));
    for (param, value) in [
        ("temperature", json!(3.0)),
        ("top_p", json!(0.0)),
        ("n", json!(0)),
        ("max_tokens", json!(0)),
        ("max_tokens", json!(5000)),
        ("repetition_penalty", json!(1.1)),
        ("logprobs", json!(5)),
        ("stop", json!([""])),
    ] {
        let mut body = json!({"model": "tiny", "prompt": "def f():"});
        body[param] = value;
        let (s, b) = post(a, "/v1/completions", body);
        assert_eq!(s, 400, "{param}: {b}");
        assert_openai_error(&b, Some(param), None);
    }
    let (s, b) = http(a, "POST", "/v1/completions", "{not json");
    assert_eq!(s, 400);
    assert_openai_error(&serde_json::from_str(&b).unwrap(), None, None);
    let big = json!({"model": "tiny", "prompt": "x".repeat(4096)});
    let (s, b) = post(a, "/v1/completions", big);
    assert_eq!(s, 413);
    assert_openai_error(&b, None, Some("request_too_large"));
    let long = json!({"model": "tiny", "prompt": "a b c d e f g h ".repeat(120)});
    let (s, b) = post(a, "/v1/completions", long);
    assert_eq!(s, 400);
    assert_openai_error(&b, Some("prompt"), Some("context_length_exceeded"));
    let (s, b) = post(a, "/v1/embeddings", json!({}));
    assert_eq!(s, 404);
    assert_openai_error(&b, None, Some("not_found"));
    let (s, b) = post(
        a,
        "/v1/chat/completions",
        json!({"messages": [{"role": "tool", "content": "x"}]}),
    );
    assert_eq!(s, 400);
    assert_openai_error(&b, Some("messages"), None);
}

#[test]
fn non_loopback_needs_public() {
    let config = ServeConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        ..Default::default()
    };
    let e = bind(Engine::tiny(7).unwrap(), &config).err().unwrap();
    assert!(e.to_string().contains("--public"), "{e}");
}

#[test]
fn concurrency_limit_answers_429() {
    let srv = server(ServeConfig {
        max_concurrency: 1,
        ..Default::default()
    });
    let a = srv.addr();
    // A stream far larger than the socket buffers, never read: its request holds the only
    // permit until the connection closes.
    let hog = json!({"model": "tiny", "prompt": "def f():", "n": 128, "max_tokens": 400,
                     "stream": true, "seed": 1});
    let mut held = TcpStream::connect(a).unwrap();
    let body = hog.to_string();
    write!(
        held,
        "POST /v1/completions HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = String::new();
    BufReader::new(&held).read_line(&mut first).unwrap();
    assert!(first.contains("200"), "{first}");
    let small = json!({"model": "tiny", "prompt": "x", "max_tokens": 2});
    let (s, b) = post(a, "/v1/completions", small.clone());
    assert_eq!(s, 429, "{b}");
    assert_openai_error(&b, None, Some("too_many_requests"));
    drop(held);
    // The permit comes back once the server notices the closed connection.
    let ok = (0..400).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        post(a, "/v1/completions", small.clone()).0 == 200
    });
    assert!(ok, "the server never released the hung-up request's permit");
}

fn params(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        top_k: 0,
        max_tokens,
    }
}

fn local(prompt: &str, n: usize, seed: u64, max_tokens: usize) -> Vec<String> {
    let engine = Engine::tiny(7).unwrap();
    let g = LocalGenerator {
        model: &engine.model,
        tokenizer: &engine.tokenizer,
        eos_token_ids: engine.eos_token_ids.clone(),
        batch_size: 4,
    };
    let req = GenRequest::new(prompt, n, seed, params(max_tokens));
    g.generate_all(&[req], &NoStop).unwrap()[0]
        .iter()
        .map(|g| g.completion.clone())
        .collect()
}

#[test]
fn completions_match_the_offline_sampler_streamed_or_not() {
    let srv = server(ServeConfig::default());
    let a = srv.addr();
    let body = json!({"model": "tiny", "prompt": "def add(a, b):\n    return", "n": 3,
                      "seed": 5, "temperature": 0.8, "top_p": 0.95, "max_tokens": 20});
    let (s, v) = post(a, "/v1/completions", body.clone());
    assert_eq!(s, 200, "{v}");
    let texts: Vec<String> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, local("def add(a, b):\n    return", 3, 5, 20));
    assert_eq!(v["object"], "text_completion");
    let usage = &v["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((3..=60).contains(&completion), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion
    );

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let (s, raw) = http(a, "POST", "/v1/completions", &stream.to_string());
    assert_eq!(s, 200);
    let data = sse_data(&raw);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let mut streamed = vec![String::new(); 3];
    let mut chunks = [0u64; 3];
    let mut finished = [0; 3];
    let mut usage_seen = None;
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["object"], "text_completion");
        if let Some(u) = v.get("usage") {
            usage_seen = Some(u.clone());
            continue;
        }
        for c in v["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap() as usize;
            streamed[i].push_str(c["text"].as_str().unwrap());
            chunks[i] += 1;
            if !c["finish_reason"].is_null() {
                finished[i] += 1;
            }
        }
    }
    assert_eq!(streamed, texts);
    assert_eq!(finished, [1, 1, 1], "each choice ends exactly once");
    // One chunk per generated token, so a client can count tokens.
    assert_eq!(chunks.iter().sum::<u64>(), completion);
    assert_eq!(usage_seen.unwrap()["completion_tokens"], json!(completion));
}

#[test]
fn stop_strings_cut_the_text_streamed_or_not() {
    let srv = server(ServeConfig::default());
    let a = srv.addr();
    let body = json!({"model": "tiny", "prompt": "import os\n", "seed": 9, "max_tokens": 40,
                      "temperature": 0.8, "top_p": 0.95});
    let (_, v) = post(a, "/v1/completions", body.clone());
    let full = v["choices"][0]["text"].as_str().unwrap().to_string();
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() > 12, "{full:?}");
    let stop: String = chars[8..11].iter().collect();
    let expected = &full[..full.find(&stop).unwrap()];
    let mut with_stop = body.clone();
    with_stop["stop"] = json!(["\u{1}never", stop]);
    let (_, v) = post(a, "/v1/completions", with_stop.clone());
    assert_eq!(v["choices"][0]["text"].as_str().unwrap(), expected);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    with_stop["stream"] = json!(true);
    let (_, raw) = http(a, "POST", "/v1/completions", &with_stop.to_string());
    let text: String = sse_data(&raw)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| {
            let v: Value = serde_json::from_str(d).unwrap();
            v["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, expected);
}

/// A throw-away virtual environment with the official `openai` client, made once per cache.
fn openai_python() -> PathBuf {
    let dir = ilf_lm::fetch::cache_dir().join("openai-venv");
    let python = dir.join("bin").join("python");
    let ready = Command::new(&python)
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let base = ilf_lm::python::interpreter().unwrap();
        let st = Command::new(base)
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "creating the venv {}", dir.display());
        let st = Command::new(dir.join("bin").join("pip"))
            .args(["install", "--quiet", "openai"])
            .status()
            .unwrap();
        assert!(
            st.success(),
            "pip install openai into {} failed (needs PyPI)",
            dir.display()
        );
    }
    python
}

const CLIENT: &str = r#"
import json, sys, openai
c = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
out = {"models": [m.id for m in c.models.list().data]}
kw = dict(model="tiny", n=2, seed=5, temperature=0.8, top_p=0.95, max_tokens=12)
r = c.completions.create(prompt="def add(a, b):\n    return", **kw)
out["completions"] = [ch.text for ch in sorted(r.choices, key=lambda ch: ch.index)]
out["usage"] = r.usage.completion_tokens
texts = ["", ""]
for chunk in c.completions.create(prompt="def add(a, b):\n    return", stream=True, **kw):
    for ch in chunk.choices:
        texts[ch.index] += ch.text
out["completions_stream"] = texts
msgs = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Add two numbers."}]
r = c.chat.completions.create(messages=msgs, **kw)
out["chat"] = [ch.message.content for ch in sorted(r.choices, key=lambda ch: ch.index)]
out["chat_roles"] = [ch.message.role for ch in r.choices]
texts = ["", ""]
for chunk in c.chat.completions.create(messages=msgs, stream=True, **kw):
    for ch in chunk.choices:
        texts[ch.index] += ch.delta.content or ""
out["chat_stream"] = texts
try:
    c.completions.create(model="missing", prompt="x")
except openai.NotFoundError as e:
    out["not_found"] = [e.status_code, e.code]
try:
    c.completions.create(model="tiny", prompt="x", temperature=9)
except openai.BadRequestError as e:
    out["bad_request"] = [e.status_code, e.param]
print(json.dumps(out))
"#;

#[test]
fn official_openai_python_client_works() {
    let python = openai_python();
    let srv = server(ServeConfig::default());
    let out = Command::new(python)
        .args(["-c", CLIENT, &srv.base_url()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["models"], json!(["tiny"]));
    let expected = local("def add(a, b):\n    return", 2, 5, 12);
    assert_eq!(v["completions"], json!(expected));
    assert_eq!(v["completions_stream"], json!(expected));
    assert!(v["usage"].as_u64().unwrap() >= 2);
    let chatml = "<|im_start|>system\nYou write Python.<|im_end|>\n<|im_start|>user\nAdd two numbers.<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(v["chat"], json!(local(chatml, 2, 5, 12)));
    assert_eq!(v["chat_stream"], v["chat"]);
    assert_eq!(v["chat_roles"], json!(["assistant", "assistant"]));
    assert_eq!(v["not_found"], json!([404, "model_not_found"]));
    assert_eq!(v["bad_request"], json!([400, "temperature"]));
}
