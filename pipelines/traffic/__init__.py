"""HTTP traffic the pipelines send: a bounded load generator, the synthetic mix of step 7,
and the smoke suite of step 5."""
