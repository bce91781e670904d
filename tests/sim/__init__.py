"""A timed allocation trace over the model's buddy allocator and reporter (trace.py) and
made-up guests for it (synth.py): how the tests and bench/bench_model.py exercise the model
where no real capture exists. Not on the verdict path (harness/verdict/prediction.py)."""
