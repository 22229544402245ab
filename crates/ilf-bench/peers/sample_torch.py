"""PyTorch/transformers peer for bench_sample: the same sampling workload on CPU.

Loads the GGUF with transformers (`gguf_file=`, dequantized to f32), samples n sequences per
prompt with `num_return_sequences` at the given temperature for exactly --max-tokens new tokens,
and prints one JSON line with tokens/s and peak RSS. Prompts are decoded --prompts-per-batch at a
time (left-padded), so a step holds as many rows as ilf's and llama.cpp's.
"""

import argparse
import json
import os
import resource
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--prompts", required=True, help="JSON file with a list of prompt strings")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts-per-batch", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    directory, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    with open(args.prompts) as f:
        prompts = json.load(f)

    tokens = 0
    seconds = 0.0
    per = max(1, args.prompts_per_batch)
    for g in range(0, len(prompts), per):
        enc = tok(prompts[g : g + per], return_tensors="pt", padding=True)
        torch.manual_seed(g)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                enc.input_ids,
                attention_mask=enc.attention_mask,
                do_sample=True,
                temperature=args.temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=args.max_tokens,
                min_new_tokens=args.max_tokens,
                num_return_sequences=args.n,
                pad_token_id=tok.pad_token_id,
            )
        seconds += time.perf_counter() - start
        tokens += (out.shape[1] - enc.input_ids.shape[1]) * out.shape[0]

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        json.dumps(
            {
                "engine": "pytorch",
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_s": tokens / seconds,
                "peak_rss_mb": peak_mb,
                "note": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, f32, {args.threads} threads",
            }
        )
    )


if __name__ == "__main__":
    main()
