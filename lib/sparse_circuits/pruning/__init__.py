"""Layer 7, pruning: learning node masks (many seeds in one batched run), discretization, hyperparameter
sweeps and loss-vs-size frontiers."""
