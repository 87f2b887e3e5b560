"""Jobs: the persistent queue, its store, workers and scale-out."""
