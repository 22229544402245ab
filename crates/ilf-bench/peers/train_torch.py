"""PyTorch + transformers (+ PEFT) peer of `bench_train`: the same examples, masking, optimizer
and schedule as ilf-train, on the same CPU. Prints one JSON line: steps, tokens, seconds (training
only, model loading excluded), tokens/s, peak RSS (ru_maxrss, loading included), final loss."""

import argparse
import json
import os
import resource
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--mode", choices=["full", "lora"], required=True)
    ap.add_argument("--lr", type=float, default=5e-6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    # bf16: the model in bfloat16 (PEFT keeps its adapters in float32, autocast_adapter_dtype).
    ap.add_argument("--base-dtype", choices=["f32", "bf16"], default="f32")
    args = ap.parse_args()

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(42)
    folder, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    dtype = torch.bfloat16 if args.base_dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=dtype)
    if args.mode == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=args.rank,
            lora_alpha=args.alpha,
            lora_dropout=args.dropout,
            target_modules=args.targets.split(","),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
    model.train()

    # Prompt and completion tokenized separately, then end-of-text; loss on completion + EOT.
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    rows = []
    for line in open(args.data):
        rec = json.loads(line)
        p = tok(rec["prompt"], add_special_tokens=False).input_ids
        c = tok(rec["completion"], add_special_tokens=False).input_ids
        ids = (p + c + [eot])[: args.max_len]
        labels = [-100] * len(p) + ids[len(p):]
        rows.append((ids, labels[: len(ids)]))

    def collate(batch):
        t = max(len(ids) for ids, _ in batch)
        ids = [ids + [eot] * (t - len(ids)) for ids, _ in batch]
        labels = [lab + [-100] * (t - len(lab)) for _, lab in batch]
        return torch.tensor(ids), torch.tensor(labels)

    micro = [rows[i : i + args.micro_batch] for i in range(0, len(rows), args.micro_batch)]
    accumulation = args.batch // args.micro_batch
    steps = -(-len(micro) // accumulation)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (steps - s) / steps))

    tokens, loss_value = 0, float("nan")
    start = time.perf_counter()
    for step in range(steps):
        group = micro[step * accumulation : (step + 1) * accumulation]
        total = 0.0
        for batch in group:
            ids, labels = collate(batch)
            loss = model(input_ids=ids, labels=labels).loss / len(group)
            loss.backward()
            total += loss.item()
            tokens += sum(len(i) for i, _ in batch)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_value = total
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "engine": "torch",
                "mode": args.mode + ("-bf16" if args.base_dtype == "bf16" else ""),
                "steps": steps,
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_s": tokens / seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "final_loss": loss_value,
            }
        )
    )


if __name__ == "__main__":
    main()
