"""Layer 6, circuits: the node layout and its labels, node masks and ablation values, the ``Circuit`` object,
its edges, and the one evaluator of node masks on prompts."""
