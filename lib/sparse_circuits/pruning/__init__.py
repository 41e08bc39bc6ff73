"""Layer 7, pruning: learning node masks (many seeds in one batched run), discretization, hyperparameter
sweeps, tuned pruning configs (``pruning.tuned``) and loss-vs-size frontiers."""
