"""Privacy by design: what may leave Thuis, and in what shape."""
