//! One linear layer of Qwen2.5-Coder-0.5B at the row counts sampling uses: candle's f32 GEMM
//! (the `inference` weights before bf16) against ilf's bf16 kernel, side by side, as a ratio,
//! for every bf16 kernel this CPU runs (the AVX2 one too where AVX512-BF16 is the default).
//!
//! `cargo run --release -p ilf-bench --bin bench_linear [-- --iters 20]`

use anyhow::Result;
use candle_core::{Device, Tensor};
use clap::Parser;
use ilf_lm::bf16_matmul::{Bf16Weight, Kernel};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Timed repetitions per shape (after one warm-up).
    #[arg(long, default_value_t = 20)]
    iters: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let kernels: Vec<Kernel> = Kernel::available()
        .into_iter()
        .filter(|k| *k != Kernel::Scalar)
        .collect();
    println!("bf16 kernels: {kernels:?} (the first is the default)");
    println!("| shape (out × in) | rows | kernel | candle f32 ms | ilf bf16 ms | ratio | f32 GB/s | bf16 GB/s |");
    println!("|---|---|---|---|---|---|---|---|");
    // q_proj/o_proj, k/v_proj, gate/up, down, lm_head of the 0.5B model.
    let shapes = [
        (896, 896),
        (128, 896),
        (4864, 896),
        (896, 4864),
        (151936, 896),
    ];
    for &(n, k) in &shapes {
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
            .collect();
        let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu)?;
        let packed = Bf16Weight::from_f32(&w, n, k);
        drop(w);
        for &m in &[1usize, 10, 64] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i % 97) as f32 - 48.0) * 1e-2)
                .collect();
            let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu)?;
            let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
                f()?;
                let t = Instant::now();
                for _ in 0..args.iters {
                    f()?;
                }
                Ok(t.elapsed().as_secs_f64() * 1e3 / args.iters as f64)
            };
            // The orientation ilf's f32 path uses at few rows: (W xᵀ)ᵀ.
            let f32_ms = time(&mut || {
                let y = if m <= 48 {
                    wt.matmul(&xt.t()?)?.t()?.contiguous()?
                } else {
                    xt.matmul(&wt.t()?)?
                };
                std::hint::black_box(y);
                Ok(())
            })?;
            let gb = |bytes: f64, ms: f64| bytes / ms / 1e6;
            for &kernel in &kernels {
                let bf16_ms = time(&mut || {
                    std::hint::black_box(packed.matmul_t_with(kernel, &x, m));
                    Ok(())
                })?;
                println!(
                    "| {n} × {k} | {m} | {kernel:?} | {f32_ms:.3} | {bf16_ms:.3} | {:.2}× | {:.1} | {:.1} |",
                    f32_ms / bf16_ms,
                    gb((n * k * 4) as f64, f32_ms),
                    gb((n * k * 2) as f64, bf16_ms)
                );
            }
        }
    }
    Ok(())
}
