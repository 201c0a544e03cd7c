"""Top layer: the serving mechanism — replicas, KV cache, step timing and the cluster."""
