//! Test support for the custom ops: each must compute what the composed candle ops compute,
//! forward and backward.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// Largest absolute difference between two tensors of one shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("tensors of one shape")
}

/// Asserts that `ours` equals `composed` within `tol`, and that the gradients of a random
/// projection of each agree within `10 · tol` for every one of `vars`. Returns `ours`'
/// gradients for further checks.
pub fn assert_same(ours: &Tensor, composed: &Tensor, vars: &[&Var], tol: f32) -> Result<GradStore> {
    let diff = max_diff(ours, composed);
    assert!(diff < tol, "forward differs by {diff}");
    let probe = Tensor::randn(0f32, 1.0, ours.shape(), ours.device())?;
    let g_ours = (ours * &probe)?.sum_all()?.backward()?;
    let g_composed = (composed * &probe)?.sum_all()?.backward()?;
    for (i, v) in vars.iter().enumerate() {
        let d = max_diff(
            g_ours.get(v).expect("gradient of ours"),
            g_composed.get(v).expect("gradient of the composed ops"),
        );
        assert!(d < 10.0 * tol, "gradient of input {i} differs by {d}");
    }
    Ok(g_ours)
}
