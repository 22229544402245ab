// ilf annotate: syntax highlighting, live checks and the run-tests action.
// Text from the server is only ever placed with textContent, never parsed as HTML.
"use strict";

const PYTHON_TOKENS = new RegExp(
  [
    String.raw`("""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?)`,
    String.raw`(#[^\n]*)`,
    String.raw`\b(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\b`,
    String.raw`\b(False|None|True|and|as|assert|async|await|break|class|continue|def|del|elif|else|except|finally|for|from|global|if|import|in|is|lambda|nonlocal|not|or|pass|raise|return|try|while|with|yield)\b`,
    String.raw`\b(abs|all|any|bool|chr|dict|enumerate|filter|float|int|isinstance|len|list|map|max|min|ord|print|range|reversed|round|set|sorted|str|sum|tuple|zip)\b`,
  ].join("|"),
  "g",
);
const TOKEN_CLASSES = ["tok-str", "tok-com", "tok-num", "tok-kw", "tok-bi"];

function highlight(element, text) {
  const source = text === undefined ? element.textContent : text;
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of source.matchAll(PYTHON_TOKENS)) {
    if (match[0].length === 0) continue;
    fragment.appendChild(document.createTextNode(source.slice(last, match.index)));
    const span = document.createElement("span");
    span.className = TOKEN_CLASSES[match.slice(1).findIndex((group) => group !== undefined)];
    span.textContent = match[0];
    fragment.appendChild(span);
    last = match.index + match[0].length;
  }
  fragment.appendChild(document.createTextNode(source.slice(last)));
  element.replaceChildren(fragment);
}

// Levenshtein over code points, as the server computes it.
function levenshtein(a, b) {
  const s = Array.from(a);
  const t = Array.from(b);
  let previous = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const current = [i];
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost));
    }
    previous = current;
  }
  return previous[t.length];
}

function editDistance(a, b) {
  const longest = Math.max(Array.from(a).length, Array.from(b).length);
  return longest === 0 ? 0 : levenshtein(a, b) / longest;
}

function feedbackWarnings(feedback, program, code) {
  const codeLines = new Set(
    (program + "\n" + code).split("\n").map((l) => l.trim()).filter((l) => l.length >= 4),
  );
  const warnings = [];
  for (const line of feedback.split("\n").map((l) => l.trim())) {
    if (codeLines.has(line)) warnings.push(`This line is code from the program: "${line}". Describe the fix in words.`);
  }
  const sentences = feedback.split(/[.!?]/).filter((s) => s.trim().split(/\s+/).length >= 2).length;
  if (sentences > 4) warnings.push(`About ${sentences} sentences; the protocol asks for 1 to 4.`);
  return warnings;
}

function setList(list, items) {
  list.replaceChildren(...items.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
}

function debounce(f, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => f(...args), ms);
  };
}

function setupAnnotate(form) {
  const started = performance.now();
  const timeBase = parseFloat(form.dataset.timeBase || "0") || 0;
  const program = document.getElementById("original").textContent;
  const feedback = document.getElementById("feedback");
  const code = document.getElementById("code");
  const preview = document.getElementById("preview");
  const distance = document.getElementById("distance");
  const run = document.getElementById("run");
  const status = document.getElementById("run-status");
  const summary = document.getElementById("run-summary");
  const diff = document.getElementById("run-diff");
  const submit = document.getElementById("submit");
  const csrf = form.querySelector('input[name="csrf"]').value;
  let passedCode = null;

  const refresh = () => {
    const d = editDistance(program, code.value);
    distance.textContent = `${(d * 100).toFixed(1)}%`;
    distance.classList.toggle("warn", d > 0.5);
    highlight(preview, code.value);
    submit.disabled = passedCode === null || passedCode !== code.value;
  };
  const checkFeedback = () => {
    setList(document.getElementById("feedback-warnings"), feedbackWarnings(feedback.value, program, code.value));
  };
  code.addEventListener("input", debounce(refresh, 120));
  code.addEventListener("input", debounce(checkFeedback, 300));
  feedback.addEventListener("input", debounce(checkFeedback, 300));
  // Tab indents inside the editor instead of leaving it.
  code.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    event.preventDefault();
    code.setRangeText("    ", code.selectionStart, code.selectionEnd, "end");
    code.dispatchEvent(new Event("input"));
  });

  run.addEventListener("click", async () => {
    const sent = code.value;
    run.disabled = true;
    status.textContent = "running…";
    status.className = "";
    try {
      const response = await fetch("/api/run", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ program_id: Number(form.dataset.programId), code: sent }),
      });
      const result = await response.json();
      if (!response.ok) {
        status.textContent = result.error || `error ${response.status}`;
        status.className = "fail";
        return;
      }
      status.textContent = result.passed ? "tests pass" : `tests fail (${result.status})`;
      status.className = result.passed ? "pass" : "fail";
      summary.textContent = result.summary;
      const pre = document.createElement("pre");
      pre.className = "diff";
      for (const line of result.diff) {
        const span = document.createElement("span");
        span.className = `diff-${line.tag}`;
        const sign = line.tag === "insert" ? "+" : line.tag === "delete" ? "-" : " ";
        span.textContent = `${sign} ${line.text}\n`;
        pre.appendChild(span);
      }
      diff.replaceChildren(pre);
      passedCode = result.passed ? sent : null;
    } catch (error) {
      status.textContent = `could not run the tests: ${error}`;
      status.className = "fail";
    } finally {
      run.disabled = false;
      refresh();
    }
  });

  form.addEventListener("submit", () => {
    const seconds = timeBase + (performance.now() - started) / 1000;
    document.getElementById("time-spent").value = seconds.toFixed(1);
  });
  refresh();
  checkFeedback();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll("pre.python, code.python")) {
    if (element.id !== "preview") highlight(element);
  }
  const form = document.getElementById("annotate");
  if (form) setupAnnotate(form);
});
