"""The trusted reference harness: data, weights, strategy and training."""
